"""What the models say about an image: the validated containers every tagger returns.

`Tagger.tag(images) -> list[ImageTags]` is the contract of DESIGN.md: a batch of RGB uint8 arrays
in, one `ImageTags` per image out, in order. Nothing here imports torch, Kafka or a database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pycocotools import mask as coco_mask


@dataclass(frozen=True)
class RleMask:
    """A binary mask as COCO compressed RLE (column-major), `size` = (height, width)."""

    size: tuple[int, int]
    counts: str

    @classmethod
    def encode(cls, mask: np.ndarray) -> RleMask:
        """The same counts as pycocotools' encode of the whole mask, from the runs of only
        the columns the mask touches. Why: a person or garment is a narrow strip of a camera
        frame, and copying the whole frame into column order for pycocotools cost 0.29 ms a
        mask against 0.05 ms this way (tens of masks a frame)."""
        if mask.ndim != 2:
            raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
        mask = np.asarray(mask, dtype=bool)
        h, w = mask.shape
        columns = np.flatnonzero(mask.any(axis=0))
        if columns.size == 0:
            runs = [h * w]
        else:
            first, end = int(columns[0]), int(columns[-1]) + 1
            pixels = mask[:, first:end].T.ravel()  # column-major, as COCO counts
            changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
            runs = np.diff(np.concatenate(([0], changes, [pixels.size]))).tolist()
            if pixels[0]:
                runs.insert(0, 0)  # counts start with a run of zeros, empty or not
            runs[0] += first * h
            if end < w:
                if len(runs) % 2:  # the last run is of zeros: the empty columns extend it
                    runs[-1] += (w - end) * h
                else:
                    runs.append((w - end) * h)
        rle = coco_mask.frPyObjects({"counts": runs, "size": [h, w]}, h, w)
        return cls(size=(h, w), counts=rle["counts"].decode("ascii"))

    def decode(self) -> np.ndarray:
        """The (H, W) bool mask."""
        rle = {"size": list(self.size), "counts": self.counts.encode("ascii")}
        return coco_mask.decode(rle).astype(bool)

    def area(self) -> int:
        rle = {"size": list(self.size), "counts": self.counts.encode("ascii")}
        return int(coco_mask.area(rle))


@dataclass(frozen=True)
class Prediction:
    """One head's answer: its top label and that label's probability."""

    label: str
    prob: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0 + 1e-6:
            raise ValueError(f"prob must be in [0, 1], got {self.prob}")


@dataclass(frozen=True)
class ColourReading:
    """The garment's colour measured from the pixels inside its mask, named in the catalogue's
    colour vocabulary (`baseColour`)."""

    name: str
    rgb: tuple[int, int, int]
    share: float  # fraction of the mask's pixels nearest this colour


@dataclass(frozen=True)
class Detections:
    """Instances found in one image: parallel numpy arrays, validated on construction.

    boxes (n, 4) float32 xyxy pixels; masks (n, H, W) bool; scores (n,) float32 in [0, 1];
    class_ids (n,) int64 indexing `class_names`.
    """

    boxes: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.scores)
        expected = {
            "boxes": (n, 4),
            "scores": (n,),
            "class_ids": (n,),
        }
        for name, shape in expected.items():
            actual = getattr(self, name).shape
            if actual != shape:
                raise ValueError(f"Detections.{name}: expected shape {shape}, got {actual}")
        if self.masks.ndim != 3 or self.masks.shape[0] != n:
            raise ValueError(
                f"Detections.masks: expected shape ({n}, H, W), got {self.masks.shape}"
            )
        if self.masks.dtype != np.bool_:
            raise ValueError(f"Detections.masks: expected dtype bool, got {self.masks.dtype}")
        if n and (self.class_ids.min() < 0 or self.class_ids.max() >= len(self.class_names)):
            raise ValueError("Detections.class_ids: an id is outside class_names")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, height: int, width: int, class_names: tuple[str, ...]) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            masks=np.zeros((0, height, width), bool),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
            class_names=class_names,
        )


@dataclass(frozen=True)
class Embedding:
    """A garment's appearance embedding: (D,) float32 unit vector, and the version of the model
    that made it (vectors of different versions are never compared)."""

    version: str
    vector: np.ndarray

    def __post_init__(self) -> None:
        if not self.version:
            raise ValueError("Embedding.version is empty")
        if self.vector.ndim != 1 or self.vector.size == 0:
            raise ValueError(f"Embedding.vector: expected (D,), got {self.vector.shape}")


@dataclass(frozen=True)
class ProductTags:
    """A catalogue photo's whole product, for the catalogue side of visual similarity: the
    embedding of the product crop (the catalogue fallback's crop: product mask, box and mask
    through the classifier's crop rule) and what the classifier's heads say of that crop. One
    per catalogue image, so a model shot is found by its product, not by what the model also
    wears."""

    category: str  # the classifier's category head on the product crop
    gender: str | None  # its gender head (None: no such head, or under its calibrated threshold)
    embedding: Embedding

    def __post_init__(self) -> None:
        if not self.category:
            raise ValueError("ProductTags.category is empty")


@dataclass(frozen=True)
class PersonTags:
    score: float
    box: tuple[float, float, float, float]
    mask: RleMask


@dataclass(frozen=True)
class GarmentTags:
    """One garment: where it is, what it is, and what the attribute heads say about it."""

    category: str  # detector category: top, outerwear, dress, skirt, shorts, trousers, ...
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the input image
    mask: RleMask
    attributes: Mapping[str, Prediction]  # head -> top label: gender, masterCategory, ...
    probabilities: Mapping[str, Mapping[str, float]]  # head -> label -> prob, every label
    colour: ColourReading
    style: Prediction  # the catalogue's `usage`: Casual, Formal, Sports, ...
    person_index: int | None = None  # index into ImageTags.people of the wearer, if any
    embedding: Embedding | None = None  # from the same forward as `attributes`, when shipped


@dataclass(frozen=True)
class ImageTags:
    """Everything the tagger found in one image."""

    width: int
    height: int
    garments: tuple[GarmentTags, ...]
    people: tuple[PersonTags, ...]
    model_version: str
    timings: Mapping[str, float] = field(default_factory=dict)  # stage -> seconds (this image's
    # share of its batch): detect, classify, ...
    product: ProductTags | None = None  # catalogue images only, when the embedding is shipped

    def __post_init__(self) -> None:
        for g in self.garments:
            if g.mask.size != (self.height, self.width):
                raise ValueError(
                    f"garment mask size {g.mask.size} != image size {(self.height, self.width)}"
                )
            if g.person_index is not None and not 0 <= g.person_index < len(self.people):
                raise ValueError(f"garment person_index {g.person_index} has no person")


@dataclass(frozen=True)
class FrameSource:
    """Where a camera frame comes from: its camera and capture time (epoch seconds). Frames of
    one camera reach the tagger in capture order (one Kafka partition per camera)."""

    camera: str
    captured_at: float


class Tagger(Protocol):
    """Anything that tags a batch of images: the real FashionTagger, or a fake in unit tests."""

    @property
    def model_version(self) -> str: ...

    def tag(
        self,
        images: Sequence[np.ndarray],
        *,
        catalogue: Sequence[bool] | None = None,
        sources: Sequence[FrameSource | None] | None = None,
    ) -> list[ImageTags]:
        """`images`: RGB uint8 arrays (H, W, 3), any sizes. Returns one ImageTags per image.
        `catalogue`: per image, True for a catalogue product photo (a feed row), whose
        ImageTags then carries its `product` (when the tagger embeds); None: none is.
        `sources`: per image, the camera and capture time of a camera frame (None: not one),
        which lets a tagger follow each camera's people between frames."""
        ...
