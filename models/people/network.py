"""The person detector for cameras: torchvision Faster R-CNN over the EfficientNet-Lite0 FPN,
one class, anchors from 12 px up for people far from the camera.

Input: (B, 3, H, W) float RGB in [0, 1]; Faster R-CNN's transform resizes (shorter side to
`min_size`, longer side at most `max_size`: 640x480 frames run at their own size) and
normalises. `PeopleConfig` travels inside the weights file so a checkpoint always rebuilds
the network it was trained as.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from models.backbones import efficientnet_lite0 as lite0
from models.detection.network import Lite0Fpn, Lite0Trunk, config_values, freeze_batch_norm

PEOPLE_ARCH = "fasterrcnn_people_effnet_lite0_fpn"
PEOPLE_CLASSES = ("background", "person")


@dataclass(frozen=True)
class PeopleConfig:
    """Architecture and inference choices of the person detector."""

    arch: str = PEOPLE_ARCH
    classes: tuple[str, ...] = PEOPLE_CLASSES
    min_size: int = 480  # a 640x480 frame keeps its size: small people stay as large as they are
    max_size: int = 640
    fpn_channels: int = 96
    frozen_stages: int = 2
    # FPN strides 8, 16, 32, 64; people are taller than wide (h/w 1 to 3), a head-to-hips
    # close-up or a seated person about square
    anchor_sizes: tuple[tuple[int, ...], ...] = ((12, 20), (32, 52), (84, 136), (220, 360))
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 3.0)
    box_head_dim: int = 512
    # training: fewer proposals and sampled RoIs than torchvision's defaults halve a CPU step
    # (1.8 s instead of 4 s for 4 views of 384 px) and still cover crowds of a hundred
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 500
    box_batch_size_per_image: int = 128
    rpn_pre_nms_top_n_test: int = 600
    rpn_post_nms_top_n_test: int = 200
    detections_per_img: int = 100  # crowds
    nms_thresh: float = 0.5
    score_thresh: float = 0.05

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PeopleConfig:
        return cls(**config_values(cls, raw))


def build_people_detector(
    *, config: PeopleConfig | None = None, pretrained_backbone: bool = False
) -> FasterRCNN:
    """Faster R-CNN, EfficientNet-Lite0 FPN backbone, one person class."""
    config = config or PeopleConfig()
    if config.arch != PEOPLE_ARCH:
        raise ValueError(f"config.arch is {config.arch!r}, this builder makes {PEOPLE_ARCH!r}")
    trunk = Lite0Trunk(lite0.efficientnet_lite0(pretrained=pretrained_backbone))
    with torch.no_grad():
        freeze_batch_norm(trunk)
    for part in [trunk.stem, *list(trunk.blocks)[: config.frozen_stages]]:
        part.requires_grad_(False)
    backbone = Lite0Fpn(trunk, config.fpn_channels)
    c = config.fpn_channels
    anchors = AnchorGenerator(
        sizes=config.anchor_sizes,
        aspect_ratios=(config.aspect_ratios,) * len(config.anchor_sizes),
    )
    levels = ["0", "1", "2", "pool"][: len(config.anchor_sizes)]
    roi_levels = [lv for lv in levels if lv != "pool"]
    return FasterRCNN(
        backbone,
        num_classes=None,
        min_size=config.min_size,
        max_size=config.max_size,
        image_mean=list(lite0.INPUT_MEAN),
        image_std=list(lite0.INPUT_STD),
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(c, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        box_roi_pool=MultiScaleRoIAlign(roi_levels, 7, 2),
        box_head=TwoMLPHead(c * 7 * 7, config.box_head_dim),
        box_predictor=FastRCNNPredictor(config.box_head_dim, len(config.classes)),
        box_score_thresh=config.score_thresh,
        box_nms_thresh=config.nms_thresh,
        box_detections_per_img=config.detections_per_img,
        box_batch_size_per_image=config.box_batch_size_per_image,
    )
