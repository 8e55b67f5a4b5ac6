"""The model registry: explicit builders, keyword-only, duplicate and unknown names refused."""

import inspect

import pytest
from torch import nn

from models.detection.network import DetectorConfig
from models.registry import ModelRegistry, ModelSpec, RegistryError, default_registry


def _builder(*, width: int = 2) -> nn.Module:
    return nn.Linear(width, width)


def test_a_name_registered_twice_is_an_error() -> None:
    spec = ModelSpec("tiny", _builder, "detection", "")
    with pytest.raises(RegistryError, match="registered twice"):
        ModelRegistry([spec, spec])


def test_an_unknown_name_lists_the_known_ones() -> None:
    registry = ModelRegistry([ModelSpec("tiny", _builder, "detection", "")])
    with pytest.raises(RegistryError, match="no model 'huge'; known: tiny"):
        registry.build("huge")


def test_the_default_registry_lists_every_shipped_architecture() -> None:
    registry = default_registry()
    assert registry.names() == (
        "attribute_effnet_lite0",
        "fasterrcnn_people_effnet_lite0_fpn",
        "maskrcnn_effnet_lite0_fpn",
        "maskrcnn_resnet50_fpn_v2",
    )
    for name, spec in registry.specs.items():
        params = inspect.signature(spec.builder).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), name


def test_the_cpu_detector_builds_with_its_config_classes() -> None:
    config = DetectorConfig(fpn_channels=32)
    model = default_registry().build(config.arch, config=config, pretrained_backbone=False)
    assert model.roi_heads.box_predictor.cls_score.out_features == len(config.classes)  # type: ignore[union-attr]
    assert model.backbone.out_channels == 32  # type: ignore[union-attr]
    # frozen stem: the ImageNet stem never trains
    assert not any(p.requires_grad for p in model.backbone.body.stem.parameters())  # type: ignore[union-attr]


@pytest.mark.parametrize("arch", ["maskrcnn_resnet50_fpn_v2", "something_else"])
def test_the_cpu_builder_refuses_another_architecture(arch: str) -> None:
    with pytest.raises(ValueError, match="this builder makes"):
        default_registry().build(
            "maskrcnn_effnet_lite0_fpn", config=DetectorConfig(arch=arch), pretrained_backbone=False
        )
