"""`fashionstream demo` (the main job, embedded default), `fashionstream bench pipeline`."""

from __future__ import annotations

from fashionstream.commands import Commands


def register(commands: Commands, bench: Commands) -> None:
    """Adds `demo` and `bench pipeline`."""
