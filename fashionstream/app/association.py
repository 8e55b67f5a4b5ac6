"""`fashionstream eval association VIDEO`: the shipped person detector on every frame of a
recording, then the track gate's tracker and ByteTrack (as the sightings tracker runs it) on the
frames the producer samples, each scored against ByteTrack on every frame
(models.tracking.association_eval)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from models.tagger import FashionTagger
from models.tracking import TrackingConfig
from models.tracking.association_eval import (
    PeopleFrames,
    appearance_ids,
    bytetrack_ids,
    reference_ids,
    score_links,
)
from producers.decoding import PtsSampler

log = logging.getLogger(__name__)

DETECT_BATCH = 8


def evaluate_association(
    video: Path, tagger: FashionTagger, config: TrackingConfig, fps: float
) -> dict[str, Any]:
    """Every frame's people (the tagger's person detector and threshold), the sampled frames'
    images, and the two trackers' link scores, as one JSON-able report."""
    import av

    if tagger.people is None:
        raise ValueError("eval association needs the camera person detector")
    sampler = PtsSampler(fps)
    boxes: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    times: list[float] = []
    sampled: list[int] = []
    images: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def detect() -> None:
        for found in tagger.people.detect(pending) if tagger.people else []:
            kept = found.scores >= tagger.thresholds.person
            boxes.append(found.boxes[kept].reshape(-1, 4).astype(np.float32))
            scores.append(found.scores[kept].astype(np.float32))
        pending.clear()
        if len(times) % 100 < DETECT_BATCH:
            log.info("eval association: %d frames", len(times))

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        native_fps = float(stream.average_rate or 25)
        for frame in container.decode(video=0):
            at = float(frame.time if frame.time is not None else len(times) / native_fps)
            image = frame.to_ndarray(format="rgb24")
            if sampler.keep(at):
                sampled.append(len(times))
                images.append(image)
            times.append(at)
            pending.append(image)
            if len(pending) == DETECT_BATCH:
                detect()
        if pending:
            detect()
    people = PeopleFrames(boxes, scores, times)
    reference = reference_ids(people, native_fps)
    trackers = {
        "track gate (appearance)": appearance_ids(people, sampled, images),
        "ByteTrack (sightings tracker)": bytetrack_ids(
            people,
            sampled,
            activation=config.activation_threshold,
            lost=config.lost_track_frames,
            match=config.match_threshold,
        ),
    }
    return {
        "video": str(video),
        "frames": len(times),
        "native_fps": round(native_fps, 2),
        "sampled_fps": fps,
        "sampled_frames": len(sampled),
        "people_per_sampled_frame": round(float(np.mean([len(scores[i]) for i in sampled])), 1)
        if sampled
        else 0.0,
        "reference_tracks": len({r for i in sampled for r in reference[i] if r is not None}),
        "trackers": {
            name: score_links(ids, sampled, reference).to_json() for name, ids in trackers.items()
        },
    }
