"""Moved to `fashionstream.core.sightings` (issue 10: the sink takes sightings from the foundation).

Kept only because a camera's tracker state in Postgres (`tracker_states`) is a pickle that names
the classes by this module's path (`BestView`, `SightingFrame` of open tracks): states written
before the move still load through these names. New code imports `fashionstream.core.sightings`.
"""

from fashionstream.core.sightings import (
    BestView,
    EndReason,
    Label,
    Sighting,
    SightingFrame,
    SightingGarment,
    sighting_id,
)

__all__ = [
    "BestView",
    "EndReason",
    "Label",
    "Sighting",
    "SightingFrame",
    "SightingGarment",
    "sighting_id",
]
