"""Tracking math: people followed across a camera's frames (ByteTrack), garments attached to them
over time, confidence-weighted votes, and sightings. Pure: no Kafka, no database, so the stream
processor and `fashionstream track` run exactly this code."""

from fashionstream.core.sightings import (
    BestView,
    EndReason,
    Label,
    Sighting,
    SightingFrame,
    SightingGarment,
    sighting_id,
)
from models.tracking.frames import FrameDetections, GarmentSeen, from_image_tags
from models.tracking.tracker import (
    STATE_FORMAT,
    CameraTracker,
    SkipReason,
    TrackerStateError,
    TrackingConfig,
    TrackingResult,
)

__all__ = [
    "STATE_FORMAT",
    "BestView",
    "CameraTracker",
    "EndReason",
    "FrameDetections",
    "GarmentSeen",
    "Label",
    "Sighting",
    "SightingFrame",
    "SightingGarment",
    "SkipReason",
    "TrackerStateError",
    "TrackingConfig",
    "TrackingResult",
    "from_image_tags",
    "sighting_id",
]
