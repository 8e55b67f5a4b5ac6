"""`fashionstream train detector` and `fashionstream eval detector`."""

from __future__ import annotations

from fashionstream.commands import Commands


def register(train: Commands, evaluate: Commands) -> None:
    """Adds `train detector` and `eval detector`."""
