"""The attribute network: an EfficientNet-Lite0 trunk, global average pooling and one linear
classifier per head. Built by name through the registry (`ARCHITECTURE`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from models.backbones.efficientnet_lite0 import HEAD_CHANNELS, EfficientNetLite0, efficientnet_lite0

ARCHITECTURE = "attribute_effnet_lite0"
# Stem and stages 0-2 (everything up to stride 8) keep their ImageNet weights while training:
# it triples the CPU training speed, and early filters are generic edges and textures.
FROZEN_STAGES = 3


class AttributeNet(nn.Module):
    """(B, 3, S, S) normalised RGB -> one (B, n_labels) logits tensor per head, in `head_names`
    order. Any S that is a multiple of 32 works; the shipped weights were trained at one size."""

    def __init__(
        self, trunk: EfficientNetLite0, heads: Mapping[str, Sequence[str]], dropout: float = 0.2
    ) -> None:
        super().__init__()
        if not heads:
            raise ValueError("an attribute network needs at least one head")
        for name, labels in heads.items():
            if len(labels) < 2:
                raise ValueError(f"head {name!r} needs at least 2 labels, got {list(labels)}")
            if len(set(labels)) != len(labels):
                raise ValueError(f"head {name!r} has duplicate labels")
        self.head_names: tuple[str, ...] = tuple(heads)
        self.stem = trunk.stem
        self.blocks = trunk.blocks
        self.head = trunk.head
        self.dropout = nn.Dropout(dropout)
        self.classifiers = nn.ModuleDict(
            {name: nn.Linear(HEAD_CHANNELS, len(labels)) for name, labels in heads.items()}
        )

    def features(self, x: Tensor) -> Tensor:
        """(B, 1280) pooled trunk features."""
        return self.head(self.blocks(self.stem(x))).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        pooled = self.dropout(self.features(x))
        return tuple(self.classifiers[name](pooled) for name in self.head_names)

    def frozen_modules(self) -> list[nn.Module]:
        """The modules training leaves at their ImageNet weights (see FROZEN_STAGES)."""
        return [self.stem, *list(self.blocks)[:FROZEN_STAGES]]


def build_attribute_net(
    *,
    heads: Mapping[str, Sequence[str]],
    pretrained_backbone: bool = False,
    drop_path: float = 0.0,
    dropout: float = 0.2,
) -> AttributeNet:
    """The registry's builder for ARCHITECTURE. `heads`: head name -> labels, in output order.
    `pretrained_backbone` loads the ImageNet EfficientNet-Lite0 weights into the trunk (for
    training); shipped weights are loaded afterwards with `load_state_dict`."""
    trunk = efficientnet_lite0(pretrained=pretrained_backbone, drop_path=drop_path)
    return AttributeNet(trunk, heads, dropout=dropout)


def half_state_dict(net: nn.Module) -> dict[str, Tensor]:
    """Floating-point tensors as float16 for storage (integer buffers kept as they are)."""
    return {
        k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach()
        for k, v in net.state_dict().items()
    }
