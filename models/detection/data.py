"""Training data for the detector: any mix of labelled sources behind one `SampleSource`
protocol, augmented views as torch tensors in torchvision's detection target format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from models.detection import augment, ccp
from models.detection.samples import InstanceSample


class SampleSource(Protocol):
    """Labelled photos by position: CCP folders, DeepFashion2 folders, in-memory test data."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> InstanceSample: ...


@dataclass(frozen=True)
class CcpSource:
    """A CCP-format folder (images/, masks/, labels.json), restricted to `ids`."""

    root: Path
    ids: tuple[str, ...]
    labels: ccp.CcpLabels

    @classmethod
    def open(cls, root: Path, split: str) -> CcpSource:
        return cls(root, tuple(ccp.image_ids(root, split)), ccp.read_labels(root))

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> InstanceSample:
        return ccp.load_sample(self.root, self.ids[index], self.labels)


class ConcatSource:
    """Several sources one after the other."""

    def __init__(self, sources: Sequence[SampleSource]) -> None:
        self.sources = tuple(sources)
        self.offsets = np.cumsum([0, *(len(s) for s in self.sources)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def load(self, index: int) -> InstanceSample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside 0..{len(self) - 1}")
        which = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[which].load(index - int(self.offsets[which]))


def to_target(sample: InstanceSample) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """InstanceSample -> torchvision detection input: (3, H, W) float in [0, 1] and the target
    dict (boxes (n, 4) float xyxy, labels (n,) int64, masks (n, H, W) uint8)."""
    image = torch.from_numpy(sample.image).permute(2, 0, 1).float().div_(255.0)
    boxes = torch.from_numpy(sample.boxes)
    target = {
        "boxes": boxes.reshape(-1, 4),
        "labels": torch.from_numpy(sample.class_ids).long(),
        "masks": torch.from_numpy(sample.masks.astype(np.uint8)),
    }
    return image, target


class AugmentedDetectionSet(Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Augmented training views of `source`. The view of item i in epoch e depends only on
    (seed, e, i): `set_epoch(e)` before each epoch; resumed runs see the same data."""

    def __init__(
        self,
        source: SampleSource,
        donors: Sequence[augment.PersonCutout],
        config: augment.AugmentConfig,
        seed: int,
    ) -> None:
        self.source = source
        self.donors = tuple(donors)
        self.config = config
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def view(self, index: int) -> InstanceSample:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self.source.load(index)
        # drawn only when camera crops are on, so earlier recipes keep their random streams
        if self.config.camera_crop_prob > 0 and rng.random() < self.config.camera_crop_prob:
            cropped = augment.camera_crop_view(sample, self.donors, self.config, rng)
            if cropped is not None:
                return augment.finish(cropped, self.config, rng)
        if self.donors and rng.random() < self.config.scene_prob:
            size = self.config.scene_sizes[int(rng.integers(len(self.config.scene_sizes)))]
            others = [self.source.load(int(i)) for i in rng.integers(0, len(self.source), 2)]
            low, high = self.config.scene_people
            count = int(rng.integers(low, high + 1))
            picked = [self.donors[int(i)] for i in rng.integers(0, len(self.donors), count)]
            out = augment.compose_scene([sample, *others], picked, size, self.config, rng)
        else:
            out = augment.augment_photo(sample, self.donors, self.config, rng)
        return augment.finish(out, self.config, rng)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return to_target(self.view(index))


def collect_donors(source: SampleSource) -> list[augment.PersonCutout]:
    """Every photo's person, cut out once, for copy-paste."""
    donors = []
    for index in range(len(source)):
        cutout = augment.cut_out_person(source.load(index))
        if cutout is not None:
            donors.append(cutout)
    return donors


def collate(
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    return [image for image, _ in batch], [target for _, target in batch]
