"""Models built by name: every builder is listed explicitly in `default_registry()`, each takes
keyword arguments only, and a name can be registered once. The weights manifest's
`architecture` field is a name in this registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn


class RegistryError(LookupError):
    """A model name registered twice, or asked for but never registered."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    task: str  # "detection" or "attributes"
    description: str


class ModelRegistry:
    """Name -> builder. Built once from an explicit list; never filled by import side effects."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise RegistryError(f"model {spec.name!r} is registered twice")
            self._specs[spec.name] = spec

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._specs))

    def spec(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise RegistryError(f"no model {name!r}; known: {', '.join(self.names())}") from None

    def build(self, name: str, **kwargs: Any) -> nn.Module:
        """The builder's network; kwargs go to the builder (all keyword-only)."""
        return self.spec(name).builder(**kwargs)

    @property
    def specs(self) -> Mapping[str, ModelSpec]:
        return dict(self._specs)


def default_registry() -> ModelRegistry:
    """Every model fashionstream ships or trains."""
    from models.attributes.network import build_attribute_net
    from models.detection.network import (
        EFFNET_ARCH,
        RESNET_ARCH,
        build_effnet_lite0_detector,
        build_resnet50_detector,
    )
    from models.people.network import PEOPLE_ARCH, build_people_detector

    return ModelRegistry(
        [
            ModelSpec(
                EFFNET_ARCH,
                build_effnet_lite0_detector,
                "detection",
                "Mask R-CNN, EfficientNet-Lite0 FPN backbone, slim heads: the CPU default",
            ),
            ModelSpec(
                RESNET_ARCH,
                build_resnet50_detector,
                "detection",
                "torchvision Mask R-CNN ResNet-50 FPN v2: GPU training on DeepFashion2",
            ),
            ModelSpec(
                "attribute_effnet_lite0",
                build_attribute_net,
                "attributes",
                "EfficientNet-Lite0 trunk with one classification head per attribute",
            ),
            ModelSpec(
                PEOPLE_ARCH,
                build_people_detector,
                "detection",
                "Faster R-CNN, EfficientNet-Lite0 FPN, one person class: people for cameras",
            ),
        ]
    )
