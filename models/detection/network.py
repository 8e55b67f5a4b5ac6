"""The detectors: torchvision Mask R-CNN over an EfficientNet-Lite0 FPN (small, fast on CPU: the
shipped default) and torchvision's `maskrcnn_resnet50_fpn_v2` (for GPU training on DeepFashion2).

Both take (B, 3, H, W) float RGB in [0, 1]; Mask R-CNN's own transform resizes (shorter side to
`min_size`, longer side at most `max_size`) and normalises. `DetectorConfig` holds every choice
that changes the architecture or its outputs; it travels inside the weights file so a checkpoint
always rebuilds the network it was trained as.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from models.backbones import efficientnet_lite0 as lite0
from models.taxonomy import DETECTOR_CLASSES

EFFNET_ARCH = "maskrcnn_effnet_lite0_fpn"
RESNET_ARCH = "maskrcnn_resnet50_fpn_v2"


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and inference choices of a detector. Defaults: the shipped CPU model."""

    arch: str = EFFNET_ARCH
    classes: tuple[str, ...] = DETECTOR_CLASSES
    min_size: int = 416  # shorter image side after Mask R-CNN's resize (inference)
    max_size: int = 640
    fpn_channels: int = 96
    frozen_stages: int = 2  # stem + this many of Lite0's 7 stages keep their ImageNet weights
    # anchors: two sizes per FPN level (strides 8, 16, 32, 64), shared aspect ratios (h/w):
    # garments run from wide shoes (0.5) to standing people (3)
    anchor_sizes: tuple[tuple[int, ...], ...] = ((16, 24), (32, 48), (64, 112), (160, 288))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    box_head_dim: int = 512
    mask_head_layers: int = 2
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 100
    detections_per_img: int = 40
    score_thresh: float = 0.05  # Mask R-CNN's own floor; the tagger's threshold comes from settings

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DetectorConfig:
        return cls(**config_values(cls, raw))


def config_values(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A detector config's saved JSON as constructor arguments: unknown fields are an error,
    lists back to the tuples the frozen configs hold (classes, aspect ratios, anchor sizes)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}")
    values = dict(raw)
    for name in ("classes", "aspect_ratios"):
        if name in values:
            values[name] = tuple(values[name])
    if "anchor_sizes" in values:
        values["anchor_sizes"] = tuple(tuple(s) for s in values["anchor_sizes"])
    return values


class Lite0Trunk(nn.Module):
    """EfficientNet-Lite0 without its head, returning the stride 8/16/32 stage outputs."""

    def __init__(self, net: lite0.EfficientNetLite0) -> None:
        super().__init__()
        self.stem = net.stem
        self.blocks = net.blocks
        self.taps = lite0.FEATURE_STAGES

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        features = []
        for index, stage in enumerate(self.blocks):
            x = stage(x)
            if index in self.taps:
                features.append(x)
        return features


class Lite0Fpn(nn.Module):
    """Trunk + FPN: {"0", "1", "2", "pool"} at strides 8, 16, 32, 64, `out_channels` each."""

    def __init__(self, trunk: Lite0Trunk, out_channels: int) -> None:
        super().__init__()
        self.body = trunk
        in_channels = [lite0.STAGE_CHANNELS[i] for i in lite0.FEATURE_STAGES]
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = OrderedDict((str(i), f) for i, f in enumerate(self.body(x)))
        out: OrderedDict[str, Tensor] = self.fpn(features)
        return out


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d -> FrozenBatchNorm2d with the same statistics: detection batches are
    a couple of images, too few to estimate batch statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)
    return module


def build_effnet_lite0_detector(
    *, config: DetectorConfig | None = None, pretrained_backbone: bool = False
) -> MaskRCNN:
    """Mask R-CNN, EfficientNet-Lite0 FPN backbone, heads slimmed for CPU inference."""
    config = config or DetectorConfig()
    if config.arch != EFFNET_ARCH:
        raise ValueError(f"config.arch is {config.arch!r}, this builder makes {EFFNET_ARCH!r}")
    trunk = Lite0Trunk(lite0.efficientnet_lite0(pretrained=pretrained_backbone))
    with torch.no_grad():
        freeze_batch_norm(trunk)
    frozen = [trunk.stem, *list(trunk.blocks)[: config.frozen_stages]]
    for part in frozen:
        part.requires_grad_(False)
    backbone = Lite0Fpn(trunk, config.fpn_channels)
    c = config.fpn_channels
    num_classes = len(config.classes)
    anchors = AnchorGenerator(
        sizes=config.anchor_sizes,
        aspect_ratios=(config.aspect_ratios,) * len(config.anchor_sizes),
    )
    levels = ["0", "1", "2", "pool"][: len(config.anchor_sizes)]
    roi_levels = [lv for lv in levels if lv != "pool"]
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=config.min_size,
        max_size=config.max_size,
        image_mean=list(lite0.INPUT_MEAN),
        image_std=list(lite0.INPUT_STD),
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(c, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        box_roi_pool=MultiScaleRoIAlign(roi_levels, 7, 2),
        box_head=TwoMLPHead(c * 7 * 7, config.box_head_dim),
        box_predictor=FastRCNNPredictor(config.box_head_dim, num_classes),
        box_score_thresh=config.score_thresh,
        box_detections_per_img=config.detections_per_img,
        box_batch_size_per_image=256,
        mask_roi_pool=MultiScaleRoIAlign(roi_levels, 14, 2),
        mask_head=MaskRCNNHeads(c, (c,) * config.mask_head_layers, 1),
        mask_predictor=MaskRCNNPredictor(c, c, num_classes),
    )


def build_resnet50_detector(
    *, config: DetectorConfig | None = None, pretrained_backbone: bool = False
) -> MaskRCNN:
    """torchvision's `maskrcnn_resnet50_fpn_v2` with our classes; `pretrained_backbone` asks
    torchvision for its ImageNet ResNet-50 (a download: GPU machines with internet only)."""
    config = config or DetectorConfig(
        arch=RESNET_ARCH, min_size=800, max_size=1333, detections_per_img=100
    )
    if config.arch != RESNET_ARCH:
        raise ValueError(f"config.arch is {config.arch!r}, this builder makes {RESNET_ARCH!r}")
    weights_backbone: Any = None
    if pretrained_backbone:
        from torchvision.models import ResNet50_Weights

        weights_backbone = ResNet50_Weights.IMAGENET1K_V1
    try:
        return _resnet50(config, weights_backbone)
    except OSError as exc:  # urllib's URLError is an OSError
        raise RuntimeError(
            "torchvision could not fetch its ImageNet ResNet-50 weights (no internet here?): "
            "put resnet50-0676ba61.pth in $TORCH_HOME/hub/checkpoints or train with "
            "--no-pretrained-backbone (random start)"
        ) from exc


def _resnet50(config: DetectorConfig, weights_backbone: Any) -> MaskRCNN:
    return maskrcnn_resnet50_fpn_v2(
        weights=None,
        weights_backbone=weights_backbone,
        num_classes=len(config.classes),
        min_size=config.min_size,
        max_size=config.max_size,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        box_score_thresh=config.score_thresh,
        box_detections_per_img=config.detections_per_img,
    )
