"""A deterministic fake tagger for agent tests and Kafka-semantics integration tests, injected
where the real FashionTagger would be (`Pipeline(tagger=...)`, `run_worker(tagger=...)`; a worker
process gets it through tests/support/fake_worker.py). Not a model: one "garment" per image,
derived from the pixels so that the same image always gives the same answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from models.tags import (
    ColourReading,
    FrameSource,
    GarmentTags,
    ImageTags,
    PersonTags,
    Prediction,
    RleMask,
)

FAKE_MODEL_VERSION = "fake-tagger-1"


class FakeTagger:
    """Tags each image with one centred garment worn by one person.

    `seconds_per_image` simulates inference cost (sleeping, so it costs no CPU); `fail_when`
    makes `tag` raise for a batch containing an image for which it returns True (to test the
    MODEL_ERROR path). `threads` records the thread names `tag` ran on.
    """

    def __init__(
        self,
        *,
        seconds_per_image: float = 0.0,
        model_version: str = FAKE_MODEL_VERSION,
        fail_when: Callable[[np.ndarray], bool] | None = None,
    ) -> None:
        self.seconds_per_image = seconds_per_image
        self._model_version = model_version
        self._fail_when = fail_when
        self.threads: list[str] = []
        self.batches: list[int] = []
        self.catalogue: list[list[bool] | None] = []
        self.sources: list[list[FrameSource | None] | None] = []
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        return self._model_version

    def tag(
        self,
        images: Sequence[np.ndarray],
        *,
        catalogue: Sequence[bool] | None = None,
        sources: Sequence[FrameSource | None] | None = None,
    ) -> list[ImageTags]:
        """`catalogue` and `sources` are recorded and otherwise ignored: the fake embeds and
        tracks nothing."""
        with self._lock:
            self.catalogue.append(None if catalogue is None else list(catalogue))
            self.sources.append(None if sources is None else list(sources))
            self.threads.append(threading.current_thread().name)
            self.batches.append(len(images))
        if self._fail_when is not None and any(self._fail_when(im) for im in images):
            raise RuntimeError("fake tagger told to fail on this image")
        if self.seconds_per_image:
            time.sleep(self.seconds_per_image * len(images))
        return [self._one(image) for image in images]

    def _one(self, image: np.ndarray) -> ImageTags:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 (H, W, 3), got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        mask = np.zeros((height, width), bool)
        y1, y2, x1, x2 = height // 4, 3 * height // 4, width // 4, 3 * width // 4
        mask[y1:y2, x1:x2] = True
        rle = RleMask.encode(mask)
        mean = image.reshape(-1, 3).mean(axis=0)
        rgb = (int(mean[0]), int(mean[1]), int(mean[2]))
        bright = float(mean.mean()) / 255.0
        garment = GarmentTags(
            category="top",
            score=0.5 + bright / 2,
            box=(float(x1), float(y1), float(x2), float(y2)),
            mask=rle,
            attributes={"gender": Prediction("Women" if bright > 0.5 else "Men", 0.75)},
            probabilities={
                "gender": {"Women": 0.75, "Men": 0.25}
                if bright > 0.5
                else {"Men": 0.75, "Women": 0.25}
            },
            colour=ColourReading("Grey", rgb, 1.0),
            style=Prediction("Casual", 0.6),
            person_index=0,
        )
        person = PersonTags(score=0.9, box=(0.0, 0.0, float(width), float(height)), mask=rle)
        return ImageTags(
            width=width,
            height=height,
            garments=(garment,),
            people=(person,),
            model_version=self._model_version,
            timings={"detect": 0.0},
        )
