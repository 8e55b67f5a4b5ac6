"""The appearance embedding: a linear projection of the attribute network's pooled features,
L2-normalised, so that cosine distance compares garments. It rides on the attribute network's
forward (`EmbeddingAttributeNet`): one pass over a crop gives its attributes and its embedding.

Tensor contract of `EmbeddingAttributeNet` (also its ONNX export): input as AttributeNet's;
outputs AttributeNet's per-head logits, then one (B, D) float32 unit-length embedding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.attributes.network import AttributeNet
from models.backbones.efficientnet_lite0 import HEAD_CHANNELS

ARCHITECTURE = "embedding_linear"
EMBEDDING_DIM = 256


class EmbeddingHead(nn.Module):
    """(B, in_features) pooled features -> (B, dim) unit vectors. `dim` 0 is the identity
    projection: the pooled features themselves, normalised (the baseline it is measured
    against)."""

    def __init__(self, in_features: int = HEAD_CHANNELS, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        if dim < 0:
            raise ValueError(f"dim must be >= 0, got {dim}")
        self.in_features = in_features
        self.dim = dim or in_features
        self.projection: nn.Module = nn.Linear(in_features, dim) if dim else nn.Identity()

    def forward(self, pooled: Tensor) -> Tensor:
        if pooled.ndim != 2 or pooled.shape[1] != self.in_features:
            raise ValueError(
                f"expected (B, {self.in_features}) features, got {tuple(pooled.shape)}"
            )
        return nn.functional.normalize(self.projection(pooled), dim=1)


class EmbeddingAttributeNet(nn.Module):
    """The attribute network with the embedding as one more output of the same forward."""

    def __init__(self, net: AttributeNet, head: EmbeddingHead) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.head_names = net.head_names

    def features(self, x: Tensor) -> Tensor:
        """(B, 1280) pooled trunk features (AttributeNet.features)."""
        return self.net.features(x)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        pooled = self.net.features(x)
        logits = tuple(self.net.classifiers[name](pooled) for name in self.net.head_names)
        return (*logits, self.head(pooled))


def build_embedding_head(
    *, in_features: int = HEAD_CHANNELS, dim: int = EMBEDDING_DIM
) -> EmbeddingHead:
    """The registry-style builder for ARCHITECTURE (keyword-only)."""
    return EmbeddingHead(in_features, dim)


def load_head(path: str, *, dim: int, in_features: int = HEAD_CHANNELS) -> EmbeddingHead:
    head = build_embedding_head(in_features=in_features, dim=dim)
    state = torch.load(path, map_location="cpu", weights_only=True)
    head.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return head.eval()
