"""The type-guided embedding: the attribute network's articleType prediction pulls a crop's
vector towards its type's centre, in the same forward; and the guidance chosen on validation
items, never on the measured ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.attributes.data import Item
from models.attributes.network import build_attribute_net, half_state_dict
from models.embedding.evaluate import retrieval_figures
from models.embedding.features import FeatureSet
from models.embedding.guidance import choose_guidance, embed, type_centres, validation_split
from models.embedding.head import (
    GUIDING_HEAD,
    EmbeddingAttributeNet,
    EmbeddingHead,
    Guidance,
    load_head,
)
from models.embedding.train import TrainConfig, train_head

torch.set_num_threads(1)
TYPES = ("Tshirts", "Shirts", "Jeans")
LABELS = {"baseColour": "Blue", "category": "top"}


def _guided_head(weight: float = 1.0) -> EmbeddingHead:
    head = EmbeddingHead(1280, 8).eval()
    head.guide(torch.eye(3, 8), Guidance(weight, temperature=1.0))
    return head


def test_a_guided_head_pulls_the_vector_towards_the_predicted_type() -> None:
    head = _guided_head()
    pooled = torch.randn(4, 1280)
    logits = torch.tensor([[9.0, 0, 0]] * 4)  # sure of the first type: centre e0
    guided = head(pooled, logits)
    alone = torch.nn.functional.normalize(head.projection(pooled), dim=1)
    torch.testing.assert_close(guided.norm(dim=1), torch.ones(4))
    assert (guided[:, 0] > alone[:, 0]).all()
    with pytest.raises(ValueError, match=r"needs \(B, 3\) type logits"):
        head(pooled)


def test_weight_zero_is_the_projection_alone() -> None:
    head = _guided_head(weight=0.0)
    pooled = torch.randn(2, 1280)
    assert not head.guided
    torch.testing.assert_close(
        head(pooled), torch.nn.functional.normalize(head.projection(pooled), dim=1)
    )


def test_the_guided_embedding_comes_from_the_same_forward_as_the_attributes() -> None:
    net = build_attribute_net(heads={GUIDING_HEAD: TYPES, "usage": ("a", "b")}).eval()
    both = EmbeddingAttributeNet(net, _guided_head()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = both(x)
        pooled = net.features(x)
        expected = both.head(pooled, net.classifiers[GUIDING_HEAD](pooled))
        torch.testing.assert_close(outputs[-1], expected)
        torch.testing.assert_close(both.embed_pooled(pooled), expected)
    for got, want in zip(outputs[:2], net(x), strict=True):
        torch.testing.assert_close(got, want)


def test_a_guided_head_refuses_a_network_whose_types_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="needs the 'articleType' head"):
        EmbeddingAttributeNet(build_attribute_net(heads={"usage": ("a", "b")}), _guided_head())
    other = build_attribute_net(heads={GUIDING_HEAD: ("a", "b")})
    with pytest.raises(ValueError, match="3 type centres for 2"):
        EmbeddingAttributeNet(other, _guided_head())


def test_a_shipped_head_loads_with_its_centres(tmp_path) -> None:
    head = _guided_head(weight=0.5)
    path = tmp_path / "head.pt"
    torch.save(half_state_dict(head), path)
    loaded = load_head(str(path), dim=8, guidance=Guidance(0.5, 1.0))
    pooled, logits = torch.randn(3, 1280), torch.randn(3, 3)
    torch.testing.assert_close(loaded(pooled, logits), head(pooled, logits), atol=2e-3, rtol=0)
    torch.save(half_state_dict(EmbeddingHead(1280, 8)), path)
    with pytest.raises(RuntimeError, match="no type centres"):
        load_head(str(path), dim=8, guidance=Guidance(0.5, 1.0))


def _scene(n: int, seed: int, source: str = "catalogue") -> FeatureSet:
    """Three types, told apart by 4 feature dimensions drowned in loud noise: a projection
    trained on few items learns them only in part, while the network's type head (set by
    hand below) reads them exactly, as a classifier trained on more data would."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 1280)).astype(np.float32) * 2.0
    x[np.arange(n), kinds] += 2.5
    items = [
        Item(source, f"{source}-{seed}-{i}", {**LABELS, GUIDING_HEAD: TYPES[k]}, False)
        for i, k in enumerate(kinds)
    ]
    return FeatureSet(x, items)


def test_guidance_is_chosen_on_validation_items_and_helps_unseen_ones() -> None:
    net = build_attribute_net(heads={GUIDING_HEAD: TYPES}).eval()
    reader = net.classifiers[GUIDING_HEAD]
    assert isinstance(reader, torch.nn.Linear)
    with torch.no_grad():
        reader.weight.zero_()
        reader.weight[:, :3] = torch.eye(3) * 4.0
        reader.bias.zero_()
    train = _scene(400, 0).joined(_scene(60, 1, "ccp"))
    fit, validation = validation_split(train)
    assert 0 < len(validation.items) < len(train.items) / 4
    assert not {i.key for i in fit.items} & {i.key for i in validation.items}
    config = TrainConfig(dim=16, epochs=8, batch=128)
    choice = choose_guidance(net, TYPES, train_head(fit, config), fit, validation)
    assert {(r["weight"], r["temperature"]) for r in choice.table} >= {(0.0, 1.0), (1.5, 2.0)}
    assert choice.guidance.weight > 0

    head = train_head(train, config)
    unguided = lambda fs: embed(net, head, fs.features)  # noqa: E731
    queries = _scene(200, 2)
    labels = lambda fs: [dict(i.labels) for i in fs.items]  # noqa: E731
    before = retrieval_figures(unguided(queries), labels(queries), unguided(train), labels(train))
    head.guide(type_centres(head, train, TYPES), choice.guidance)
    guided = lambda fs: embed(net, head, fs.features)  # noqa: E731
    after = retrieval_figures(guided(queries), labels(queries), guided(train), labels(train))
    # measured: 0.34 unguided (chance: the noise wins), 0.65 guided (weight 1.5)
    assert after["articleType"] > before["articleType"] + 0.05
