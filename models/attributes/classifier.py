"""The shipped attribute classifier: loads the manifest's "attributes" weights and classifies
garment crops. The tagger calls `prepare` on each detected garment, then `predict` on the batch
(torch) or runs `module` exported to ONNX and turns its logits into probabilities with
`probabilities_from_logits` (models.attributes.outputs).

Tensor contract of `module` (also its ONNX export): input (B, 3, S, S) float32, RGB scaled to
[0, 1] then normalised with `mean`/`std` (i.e. [-1, 1]), S = `input_size`; outputs one (B, n)
float32 logits tensor per head, in `heads` order, n = len(heads[head]); with an embedding head
(models.embedding.head.EmbeddingAttributeNet) one more output, the (B, D) unit embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models import weights as W
from models.attributes.crop import Box, prepare_crop
from models.attributes.network import ARCHITECTURE, AttributeNet, build_attribute_net
from models.attributes.outputs import split_outputs
from models.backbones.efficientnet_lite0 import INPUT_MEAN, INPUT_STD
from models.embedding.head import ARCHITECTURE as EMBEDDING_ARCHITECTURE
from models.embedding.head import EmbeddingAttributeNet, EmbeddingHead, Guidance, load_head


def load_embedding(
    weights_dir: Path, attributes: W.WeightsEntry, manifest: W.Manifest | None = None
) -> tuple[EmbeddingHead, str]:
    """The manifest's embedding head (sha256 checked) and its version; it must have been
    trained on this attribute network's features."""
    entry = W.entry(weights_dir, W.EMBEDDING_ENTRY, manifest)
    if entry.architecture != EMBEDDING_ARCHITECTURE:
        raise W.WeightsError(
            f"{W.EMBEDDING_ENTRY}: architecture {entry.architecture!r}, "
            f"expected {EMBEDDING_ARCHITECTURE!r}"
        )
    trained_on = entry.preprocessing.get("attributes_version")
    if trained_on != attributes.version:
        raise W.WeightsError(
            f"{W.EMBEDDING_ENTRY}: trained on attributes {trained_on!r}, shipped with "
            f"{attributes.version!r}; retrain it (fashionstream train embedding)"
        )
    path = entry.verified_path(weights_dir)
    dim = int(entry.preprocessing["dim"])
    guided = entry.preprocessing.get("guidance")
    guidance = None if not guided else Guidance(guided["weight"], guided["temperature"])
    try:
        head = load_head(
            str(path),
            dim=dim,
            in_features=int(entry.preprocessing["in_features"]),
            guidance=guidance,
        )
    except RuntimeError as exc:
        raise W.WeightsError(f"{path}: does not fit the manifest's head: {exc}") from exc
    return head, entry.version


class AttributeClassifier:
    """Multi-head garment classifier. Built from its parts; `from_weights` reads the manifest."""

    def __init__(
        self,
        module: AttributeNet,
        heads: Mapping[str, Sequence[str]],
        input_size: int,
        *,
        device: str = "cpu",
        version: str = "",
        mean: Sequence[float] = INPUT_MEAN,
        std: Sequence[float] = INPUT_STD,
        embedding: EmbeddingHead | None = None,
        embedding_version: str = "",
    ) -> None:
        if tuple(heads) != module.head_names:
            raise ValueError(f"heads {list(heads)} differ from the module's {module.head_names}")
        if input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        self.heads: dict[str, tuple[str, ...]] = {h: tuple(v) for h, v in heads.items()}
        self.input_size = input_size
        self.version = version
        self.device = torch.device(device)
        if (embedding is None) != (not embedding_version):
            raise ValueError("an embedding head needs its version, and a version its head")
        self.embedding_version = embedding_version
        self.embedding = embedding
        self.network = module.to(self.device).eval()
        # the attribute network, with the embedding as one more output of its forward when a
        # head is shipped (one pass over each crop gives both)
        self.module: nn.Module = (
            (module if embedding is None else EmbeddingAttributeNet(module, embedding))
            .to(self.device)
            .eval()
        )
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_weights(
        cls,
        weights_dir: Path,
        *,
        device: str = "cpu",
        manifest: W.Manifest | None = None,
        with_embedding: bool = True,
    ) -> AttributeClassifier:
        """The manifest's "attributes" model, its file's sha256 checked first (`manifest`:
        the manifest when the caller has read it already), with the manifest's "embedding"
        head when there is one (unless `with_embedding` is False)."""
        entry = W.entry(weights_dir, W.ATTRIBUTES_ENTRY, manifest)
        if entry.architecture != ARCHITECTURE:
            raise W.WeightsError(
                f"{W.ATTRIBUTES_ENTRY}: architecture {entry.architecture!r}, "
                f"expected {ARCHITECTURE!r}"
            )
        path = entry.verified_path(weights_dir)
        heads = {h: tuple(labels) for h, labels in entry.classes.items()}
        module = build_attribute_net(heads=heads)
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise W.WeightsError(f"{path}: does not fit the manifest's heads: {exc}") from exc
        normalisation = entry.normalisation
        head, head_version = None, ""
        shipped = manifest if manifest is not None else W.load_manifest(weights_dir)
        if with_embedding and W.EMBEDDING_ENTRY in shipped:
            head, head_version = load_embedding(weights_dir, entry, manifest)
        return cls(
            module,
            heads,
            int(entry.preprocessing["input_size"]),
            device=device,
            version=entry.version,
            mean=normalisation.mean,
            std=normalisation.std,
            embedding=head,
            embedding_version=head_version,
        )

    def prepare(self, image: np.ndarray, box: Box | None, mask: np.ndarray | None) -> np.ndarray:
        """One garment's crop, (S, S, 3) uint8, by the crop rule of models.attributes.crop: box
        grown 10% a side, pixels outside the mask grey, letterboxed on grey. No box and no mask:
        the whole image (a single-product photo)."""
        return prepare_crop(image, box, mask, self.input_size)

    def to_batch(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, 3, S, S) float32 normalised, on the classifier's device."""
        s = self.input_size
        for i, crop in enumerate(crops):
            if crop.shape != (s, s, 3) or crop.dtype != np.uint8:
                raise ValueError(f"crop {i}: expected ({s}, {s}, 3) uint8, got {crop.shape}")
        if not crops:
            return torch.zeros((0, 3, s, s), device=self.device)
        x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float()
        return (x / 255.0 - self._mean) / self._std

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """{head: (n_labels,) probabilities} per crop, in `heads` label order."""
        return self.predict_embedded(crops)[0]

    def predict_embedded(
        self, crops: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
        """`predict`'s probabilities and, from the same forward, the (B, D) float32 unit
        embeddings (None without an embedding head)."""
        if not crops:
            return [], None
        with torch.inference_mode():
            outputs = [t.float().cpu().numpy() for t in self.module(self.to_batch(crops))]
        return split_outputs(outputs, self.heads, bool(self.embedding_version))

    def top_labels(self, probs: Mapping[str, np.ndarray]) -> dict[str, tuple[str, float]]:
        """{head: (label, probability)} of one crop's `predict` output."""
        return {
            head: (self.heads[head][int(np.argmax(p))], float(np.max(p)))
            for head, p in probs.items()
        }
