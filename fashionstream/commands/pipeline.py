"""`fashionstream worker` and `fashionstream produce images|video`."""

from __future__ import annotations

from fashionstream.commands import Commands


def register(commands: Commands, produce: Commands) -> None:
    """Adds `worker`, `produce images` and `produce video`."""
