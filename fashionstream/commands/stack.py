"""`fashionstream up` / `down`: the embedded local broker and Postgres."""

from __future__ import annotations

from fashionstream.commands import Commands


def register(commands: Commands) -> None:
    """Adds `up` and `down`. (Filled in with infra/local_stack.py.)"""
