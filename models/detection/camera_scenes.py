"""Garments of small camera people, scored: each labelled CCP photo's person shrunk to a given
height and placed on a real camera frame, the whole tagger run on that frame, and the garments it
reports scored against the pasted person's garment masks in frame coordinates
(`fashionstream eval detector --person-height`).

Camera frames have people of their own whose garments nobody labelled, so only the garments
whose box centre lies inside the pasted person's box are scored: the question is how well the
garments of a person of that height are found, not how many other people the frame holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from models.detection.augment import cut_out_person, paste_person
from models.detection.evaluate import DetectionMetrics, score_in_batches
from models.detection.samples import InstanceSample, boxes_from_masks
from models.tags import Detections, ImageTags
from models.taxonomy import DETECTOR_CLASSES, PERSON

SCENE_WIDTH = 640
SCENE_HEIGHT = 480
PERSON_ID = DETECTOR_CLASSES.index(PERSON)

Tag = Callable[[Sequence[np.ndarray]], list[ImageTags]]


def camera_scenes(
    samples: Iterable[InstanceSample],
    backgrounds: Sequence[np.ndarray],
    person_height: int,
    seed: int = 0,
) -> Iterator[InstanceSample]:
    """Each sample's person (with the garments they wear) scaled to `person_height` px and
    pasted onto one of `backgrounds` (640x480 RGB frames, taken in turn), standing on the lower
    part of the frame at a seeded random x. Samples without a person are skipped."""
    if not backgrounds:
        raise ValueError("no background frames")
    for index, sample in enumerate(samples):
        cutout = cut_out_person(sample, max_height=max(person_height, 400))
        if cutout is None:
            continue
        rng = np.random.default_rng([seed, person_height, index])
        background = backgrounds[index % len(backgrounds)]
        if background.shape != (SCENE_HEIGHT, SCENE_WIDTH, 3):
            raise ValueError(f"background {index % len(backgrounds)} is not 640x480 RGB")
        width = round(cutout.alpha.shape[1] * person_height / cutout.alpha.shape[0])
        x = int(rng.integers(0, max(1, SCENE_WIDTH - width)))
        feet = int(rng.integers(min(person_height, SCENE_HEIGHT - 4), SCENE_HEIGHT - 2))
        scene = InstanceSample(
            f"{sample.image_id}@{person_height}px",
            background.copy(),
            np.zeros((0, SCENE_HEIGHT, SCENE_WIDTH), bool),
            np.zeros(0, np.int64),
        )
        yield paste_person(scene, cutout, x, feet - person_height, person_height)


def evaluate_tagger_on_scenes(
    tag: Tag,
    scenes: Iterable[InstanceSample],
    *,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> DetectionMetrics:
    """Runs the tagger over the scenes and scores garment masks (and the person's box) of the
    pasted person, as `evaluate_detector` scores a detector."""
    return score_in_batches(
        scenes, tag, _on_pasted_person, batch_size=batch_size, progress=progress
    )


def _on_pasted_person(scene: InstanceSample, tags: ImageTags) -> Detections:
    """The tagger's garments and people whose box centre lies in the pasted person's box, as
    Detections over DETECTOR_CLASSES (people's masks are their boxes)."""
    person = np.flatnonzero(scene.class_ids == PERSON_ID)
    h, w = scene.image.shape[:2]
    if not len(person):
        return Detections(
            np.zeros((0, 4), np.float32),
            np.zeros((0, h, w), bool),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            DETECTOR_CLASSES,
        )
    x0, y0, x1, y1 = boxes_from_masks(scene.masks[person[-1]][None])[0]
    boxes, masks, scores, ids = [], [], [], []
    found = [(g.category, g.score, g.box, g.mask.decode()) for g in tags.garments]
    for p in tags.people:
        mask = np.zeros((h, w), bool)
        bx0, by0 = max(0, int(p.box[0])), max(0, int(p.box[1]))
        mask[by0 : int(np.ceil(p.box[3])), bx0 : int(np.ceil(p.box[2]))] = True
        found.append((PERSON, p.score, p.box, mask))
    for category, score, box, mask in found:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if category in DETECTOR_CLASSES and x0 <= cx <= x1 and y0 <= cy <= y1:
            boxes.append(box)
            masks.append(mask)
            scores.append(score)
            ids.append(DETECTOR_CLASSES.index(category))
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(masks, bool).reshape(-1, h, w),
        np.array(scores, np.float32),
        np.array(ids, np.int64),
        DETECTOR_CLASSES,
    )
