"""One module per group of CLI commands, each with a `register(...)` for fashionstream.app.cli."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# the object `add_subparsers()` returns; generic only for type checkers, hence the string
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
