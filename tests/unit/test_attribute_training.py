"""Pure pieces of attribute training and evaluation: vocabularies, label matrix, the masked
loss, probabilities, macro F1 and the --products counting rules."""

import math
from typing import ClassVar

import numpy as np
import pytest
import torch

from models.attributes import labels as L
from models.attributes.augment import SOURCE_IDS, augment_batch, deployment_batch
from models.attributes.data import Item, is_held_out
from models.attributes.evaluate import head_score, macro_f1, score_catalogue
from models.attributes.outputs import probabilities_from_logits
from models.attributes.train import label_matrix, masked_loss, vocabularies


def _item(source: str, held_out: bool = False, **labels: str) -> Item:
    return Item(source, "k", labels, held_out)


def test_vocabularies_count_catalogue_training_photos_only() -> None:
    items = (
        [_item("catalogue", articleType="Shirts")] * 20
        + [_item("catalogue", articleType="Ties")] * 19
        + [_item("catalogue", True, articleType="Ties")] * 5  # held out: not counted
        + [_item("ccp", articleType="Jeans")] * 50  # other sources: not counted
        + [_item("catalogue", gender="Men")] * 10
    )
    heads = vocabularies(items)
    assert list(heads) == list(L.HEAD_NAMES)
    assert heads["articleType"] == ("Shirts",)
    assert heads["gender"] == ("Men",)
    assert heads["usage"] == L.STYLE_LABELS


def test_label_matrix_marks_missing_and_unknown_as_minus_one() -> None:
    heads = {"gender": ("Men", "Women"), "usage": ("Casual", "Formal")}
    items = [_item("catalogue", gender="Women", usage="Home"), _item("clothing")]
    np.testing.assert_array_equal(label_matrix(items, heads), [[1, -1], [-1, -1]])


def test_masked_loss_leaves_out_missing_labels() -> None:
    logits = (torch.tensor([[5.0, 0.0], [0.0, 5.0]]), torch.tensor([[0.0, 0.0], [9.0, 0.0]]))
    targets = torch.tensor([[0, -1], [1, -1]])
    total, per_head = masked_loss(logits, targets, [1.0, 1.0], smoothing=0.0)
    expected = float(torch.nn.functional.cross_entropy(logits[0], torch.tensor([0, 1])))
    assert float(total) == pytest.approx(expected)
    assert per_head[0] == pytest.approx(expected)
    assert math.isnan(per_head[1])
    heavy, _ = masked_loss(logits, targets, [2.0, 1.0], smoothing=0.0)
    assert float(heavy) == pytest.approx(2 * expected)


def test_probabilities_from_logits() -> None:
    heads = {"a": ("x", "y"), "b": ("p", "q", "r")}
    probs = probabilities_from_logits(
        [np.array([[0.0, 0.0], [1000.0, 0.0]]), np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])],
        heads,
    )
    assert len(probs) == 2
    np.testing.assert_allclose(probs[0]["a"], [0.5, 0.5])
    np.testing.assert_allclose(probs[1]["a"], [1.0, 0.0])  # no overflow
    np.testing.assert_allclose(probs[1]["b"], [1 / 3] * 3, rtol=1e-6)
    assert probs[0]["b"].argmax() == 2
    assert probs[0]["b"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        ([np.zeros((1, 2))], "2 heads"),
        ([np.zeros((1, 2)), np.zeros((2, 3))], "batch size"),
        ([np.zeros((1, 2)), np.zeros((1, 4))], "head b"),
    ],
)
def test_probabilities_refuse_mismatched_logits(logits, message) -> None:
    with pytest.raises(ValueError, match=message):
        probabilities_from_logits(logits, {"a": ("x", "y"), "b": ("p", "q", "r")})


@pytest.mark.parametrize(
    ("truth", "predicted", "expected"),
    [
        (["a", "b"], ["a", "b"], 1.0),
        (["a", "a", "b", "b"], ["a", "a", "a", "b"], (0.8 + 2 / 3) / 2),
        (["a", "a"], ["b", "b"], 0.0),
        ([], [], 0.0),
    ],
)
def test_macro_f1(truth, predicted, expected) -> None:
    assert macro_f1(truth, predicted) == pytest.approx(expected)


def test_head_score() -> None:
    assert head_score(["a", "b", "b"], ["a", "b", "a"]) == {
        "accuracy": pytest.approx(0.6667, abs=1e-4),
        "macro_f1": pytest.approx(2 / 3, abs=1e-4),
        "n": 3,
    }


class _FakeClassifier:
    heads: ClassVar[dict[str, tuple[str, ...]]] = {
        "category": ("top", "footwear"),
        "gender": ("Men", "Women"),
        "articleType": ("Shirts", "Heels"),
        "usage": ("Casual", "Formal"),
    }


def test_products_counting_rules() -> None:
    rows = [
        {"gender": "Men", "articleType": "Shirts", "usage": "Casual"},
        {"gender": "Women", "articleType": "Heels", "usage": "Home"},  # usage unknown
        {"gender": "Boys", "articleType": "Lip Gloss", "usage": "NA"},  # 2 unknown, 1 missing
        {"gender": "", "articleType": "Watches", "usage": "Formal"},  # no category
    ]
    predictions = [
        {"category": "top", "gender": "Men", "articleType": "Shirts", "usage": "Formal"},
        {"category": "top", "gender": "Women", "articleType": "Heels", "usage": "Casual"},
        {"category": "top", "gender": "Men", "articleType": "Shirts", "usage": "Casual"},
        {"category": "top", "gender": "Men", "articleType": "Shirts", "usage": "Formal"},
    ]
    report = score_catalogue(_FakeClassifier(), rows, predictions)  # type: ignore[arg-type]
    assert report["unknown"] == 4  # Home, Boys, Lip Gloss, Watches (articleType)
    assert report["heads"]["gender"]["n"] == 2
    assert report["heads"]["gender"]["accuracy"] == 1.0
    # usage: Casual F1 0 (missed), Formal F1 2/3 (one hit, one false alarm)
    assert report["heads"]["usage"] == {
        "accuracy": 0.5,
        "macro_f1": pytest.approx(1 / 3, abs=1e-4),
        "n": 2,
    }
    assert report["heads"]["category"] == {
        "accuracy": 0.5,
        "macro_f1": pytest.approx(1 / 3, abs=1e-4),
        "n": 2,
    }
    assert report["heads"]["articleType"]["n"] == 2


def test_held_out_rule_is_stable_and_near_its_share() -> None:
    ids = [str(i) for i in range(20000)]
    share = np.mean([is_held_out(i, 0.1) for i in ids])
    assert 0.09 < share < 0.11
    assert is_held_out("1533", 0.1) == is_held_out("1533", 0.1)


def test_augmented_and_deployment_batches_have_the_input_shape() -> None:
    canvas = torch.zeros(6, 48, 48, 4, dtype=torch.uint8)
    canvas[..., :3] = 255
    canvas[:, 8:40, 8:40, 3] = 255
    sources = torch.tensor([SOURCE_IDS[s] for s in ["catalogue", "ccp", "clothing"] * 2])
    bank = torch.zeros(3, 48, 48, 3, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    x = augment_batch(canvas, sources, bank, 32, g)
    assert x.shape == (6, 3, 32, 32)
    assert x.min() >= -1.0
    assert x.max() <= 1.0
    d = deployment_batch(canvas, sources, 32)
    assert d.shape == (6, 3, 32, 32)
    # the CCP crop is greyed outside its foreground (0 after normalisation), the others kept
    assert float(d[1, :, 0, 0].abs().max()) < 1e-6
    assert float(d[0, :, 0, 0].min()) == pytest.approx(1.0)
