"""`fashionstream train attributes` and `fashionstream eval attributes`."""

from __future__ import annotations

from fashionstream.commands import Commands


def register(train: Commands, evaluate: Commands) -> None:
    """Adds `train attributes` and `eval attributes`."""
