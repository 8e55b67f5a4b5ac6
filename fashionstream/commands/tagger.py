"""`fashionstream annotate` and `fashionstream bench tagger`."""

from __future__ import annotations

from fashionstream.commands import Commands


def register(commands: Commands, bench: Commands) -> None:
    """Adds `annotate` and `bench tagger`."""
