"""The appearance embedding: a linear projection of the attribute network's pooled features,
guided by the network's own article-type prediction, L2-normalised so that cosine distance
compares garments. It rides on the attribute network's forward (`EmbeddingAttributeNet`): one
pass over a crop gives its attributes and its embedding.

Guidance (why): the attribute network's articleType head was trained end to end on augmented
crops, the projection only on cached features; the two err differently. The guided vector is
unit(z + weight * unit(p @ centres)), z the unit projection, p the articleType softmax at
`temperature`, `centres` (types, dim) the mean projection of each type's training crops: a crop
is pulled towards where the classifier believes its type sits. An unguided head (no centres)
is the projection alone.

Tensor contract of `EmbeddingAttributeNet` (also its ONNX export): input as AttributeNet's;
outputs AttributeNet's per-head logits, then one (B, D) float32 unit-length embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.attributes.network import AttributeNet
from models.backbones.efficientnet_lite0 import HEAD_CHANNELS

ARCHITECTURE = "embedding_type_guided"
EMBEDDING_DIM = 256
GUIDING_HEAD = "articleType"  # the attribute head whose prediction guides the vector


@dataclass(frozen=True)
class Guidance:
    """How strongly, and at which softmax temperature, the type prediction pulls the vector."""

    weight: float
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.weight < 0 or self.temperature <= 0:
            raise ValueError(f"guidance needs weight >= 0 and temperature > 0, got {self}")


class EmbeddingHead(nn.Module):
    """(B, in_features) pooled features [+ (B, types) articleType logits] -> (B, dim) unit
    vectors. `dim` 0 is the identity projection: the pooled features themselves, normalised
    (the baseline it is measured against)."""

    type_centres: Tensor

    def __init__(self, in_features: int = HEAD_CHANNELS, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        if dim < 0:
            raise ValueError(f"dim must be >= 0, got {dim}")
        self.in_features = in_features
        self.dim = dim or in_features
        self.projection: nn.Module = nn.Linear(in_features, dim) if dim else nn.Identity()
        self.register_buffer("type_centres", torch.zeros(0, self.dim))
        self.guidance = Guidance(weight=0.0)

    @property
    def guided(self) -> bool:
        return self.type_centres.shape[0] > 0 and self.guidance.weight > 0

    def guide(self, centres: Tensor, guidance: Guidance) -> None:
        """Sets the per-type centres (types, dim), in the guiding head's label order."""
        if centres.ndim != 2 or centres.shape[1] != self.dim or not len(centres):
            raise ValueError(f"expected (types, {self.dim}) centres, got {tuple(centres.shape)}")
        self.type_centres = centres.detach().float().clone()
        self.guidance = guidance

    def forward(self, pooled: Tensor, type_logits: Tensor | None = None) -> Tensor:
        if pooled.ndim != 2 or pooled.shape[1] != self.in_features:
            raise ValueError(
                f"expected (B, {self.in_features}) features, got {tuple(pooled.shape)}"
            )
        z = nn.functional.normalize(self.projection(pooled), dim=1)
        if not self.guided:
            return z
        if type_logits is None or type_logits.shape != (len(pooled), len(self.type_centres)):
            raise ValueError(
                f"a guided head needs (B, {len(self.type_centres)}) type logits, got "
                f"{None if type_logits is None else tuple(type_logits.shape)}"
            )
        p = torch.softmax(type_logits / self.guidance.temperature, dim=1)
        pull = nn.functional.normalize(p @ self.type_centres, dim=1)
        return nn.functional.normalize(z + self.guidance.weight * pull, dim=1)


class EmbeddingAttributeNet(nn.Module):
    """The attribute network with the embedding as one more output of the same forward."""

    def __init__(self, net: AttributeNet, head: EmbeddingHead) -> None:
        super().__init__()
        if head.guided:
            if GUIDING_HEAD not in net.head_names:
                raise ValueError(f"a guided embedding needs the {GUIDING_HEAD!r} head")
            types = net.classifiers[GUIDING_HEAD].out_features
            if types != len(head.type_centres):
                raise ValueError(
                    f"{len(head.type_centres)} type centres for {types} {GUIDING_HEAD} labels"
                )
        self.net = net
        self.head = head
        self.head_names = net.head_names

    def features(self, x: Tensor) -> Tensor:
        """(B, 1280) pooled trunk features (AttributeNet.features)."""
        return self.net.features(x)

    def embed_pooled(self, pooled: Tensor) -> Tensor:
        """(B, D) embeddings of pooled features (cached ones, or the forward's own)."""
        return self._embed(pooled, None)

    def _embed(self, pooled: Tensor, logits: dict[str, Tensor] | None) -> Tensor:
        if not self.head.guided:
            return self.head(pooled)
        if logits is None:
            type_logits = self.net.classifiers[GUIDING_HEAD](pooled)
        else:
            type_logits = logits[GUIDING_HEAD]
        return self.head(pooled, type_logits)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        pooled = self.net.features(x)
        logits = {name: self.net.classifiers[name](pooled) for name in self.net.head_names}
        return (*logits.values(), self._embed(pooled, logits))


def build_embedding_head(
    *, in_features: int = HEAD_CHANNELS, dim: int = EMBEDDING_DIM
) -> EmbeddingHead:
    """The registry-style builder for ARCHITECTURE (keyword-only)."""
    return EmbeddingHead(in_features, dim)


def load_head(
    path: str,
    *,
    dim: int,
    in_features: int = HEAD_CHANNELS,
    guidance: Guidance | None = None,
) -> EmbeddingHead:
    """A shipped head: its projection and, when `guidance` is given, its type centres."""
    head = build_embedding_head(in_features=in_features, dim=dim)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.float() for k, v in state.items()}
    centres = state.pop("type_centres", None)
    head.load_state_dict({**state, "type_centres": head.type_centres}, strict=True)
    if guidance is not None:
        if centres is None or not len(centres):
            raise RuntimeError("the manifest says guided, the file has no type centres")
        head.guide(centres, guidance)
    return head.eval()
