"""ByteTrack as the camera tracker (sightings) uses it: built for the sampling rate, and its
tracks paired with the frame's person detections. The track gate follows people with
models.tracking.appearance instead; `eval association` scores both against ByteTrack run on
every frame (models.tracking.association_eval)."""

from __future__ import annotations

import numpy as np
import supervision as sv

from models.tracking.assignment import assign


def new_byte_track(*, activation: float, lost_frames: int, match: float) -> sv.ByteTrack:
    return sv.ByteTrack(
        track_activation_threshold=activation,
        lost_track_buffer=lost_frames,
        minimum_matching_threshold=match,
        frame_rate=30,  # lost_track_buffer is already in frames at the sampling rate
        minimum_consecutive_frames=1,
    )


def follow(
    byte_track: sv.ByteTrack, boxes: np.ndarray, scores: np.ndarray
) -> list[tuple[int, int]]:
    """(ByteTrack id, person index) for every person ByteTrack follows in this frame.

    ByteTrack's `update_with_tensors` returns only its confirmed tracks: a person who comes
    into view after the first frame would be returned from their second frame on, so their
    sighting would start one frame late (half a second at 2 fps). Every track it matched or
    started in this frame is in `tracked_tracks` (a new one is unconfirmed, and has its id
    already since `minimum_consecutive_frames` is 1), so those are taken instead; a new track
    ByteTrack then drops is one frame long and ends as noise.

    ByteTrack does not say which detection each track took, so they are paired with the
    detections by box overlap (supervision's own `update_with_detections` does the same with
    IoU >= 0.5, which a Kalman-smoothed box of a fast-moving person can miss at 2 fps)."""
    tensors = np.hstack([boxes.reshape(-1, 4), scores.reshape(-1, 1)]).astype(np.float32)
    byte_track.update_with_tensors(tensors)
    tracks = [t for t in byte_track.tracked_tracks if t.frame_id == byte_track.frame_id]
    if not tracks or not len(scores):
        return []
    track_boxes = np.stack([t.tlbr for t in tracks]).astype(np.float64)
    overlap = sv.box_iou_batch(track_boxes, boxes.reshape(-1, 4).astype(np.float64))
    pairs = [(int(tracks[r].external_track_id), c) for r, c in assign(1.0 - overlap, 0.9)]
    return sorted(pairs, key=lambda p: p[1])
