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
from models.tracking.frames import (
    UNKNOWN_STREAM,
    FrameDetections,
    GarmentSeen,
    frame_detections,
)
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
    "UNKNOWN_STREAM",
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
    "frame_detections",
    "sighting_id",
]
