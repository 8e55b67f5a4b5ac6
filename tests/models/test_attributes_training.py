"""`train attributes` end to end on a tiny data root made of the committed fixtures: it builds
its cache, trains, checkpoints, resumes from the checkpoint, and ships weights + a manifest entry
that AttributeClassifier loads."""

import json
from pathlib import Path

import pytest
import torch

from models import weights as W
from models.attributes import data as D
from models.attributes import labels as L
from models.attributes import train as T
from models.attributes.classifier import AttributeClassifier

pytestmark = pytest.mark.models

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "attributes"
CPU = torch.device("cpu")


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # the fixture photos are all from held-out splits: split this tiny root differently
    monkeypatch.setattr(D, "CATALOGUE_HELD_OUT", 0.0)
    monkeypatch.setattr(D, "CCP_HELD_OUT", 0.0)
    root = tmp_path / "data"
    (root / "street" / "clothing-small").mkdir(parents=True)
    (root / "products").symlink_to(FIXTURES / "products")
    (root / "street" / "ccp").symlink_to(FIXTURES / "ccp")
    (root / "street" / "clothing-small" / "train").symlink_to(FIXTURES / "folders")
    (root / "street" / "clothing-small" / "validation").symlink_to(FIXTURES / "folders")
    return root


def test_train_checkpoints_resumes_and_ships(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fixtures have one or two photos per label: let every label have an output
    monkeypatch.setattr(L, "min_train_images", lambda head: 1)
    out, weights = tmp_path / "run", tmp_path / "weights"
    config = T.TrainConfig(
        data_root=data_root,
        out_dir=out,
        epochs=1,
        batch_size=8,
        input_size=64,
        canvas_size=72,
        warmup_steps=1,
        limit_steps=2,
    )
    first = T.train(config, weights, device=CPU, resume=False, command="test run 1")
    saved = torch.load(out / T.CHECKPOINT, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0
    assert saved["step"] == 2
    assert len(saved["history"]) == 1
    assert (out / "cache_72" / "items.json").is_file()

    again = T.TrainConfig(**{**config.__dict__, "epochs": 2})
    second = T.train(again, weights, device=CPU, resume=True, command="test run 2")
    saved = torch.load(out / T.CHECKPOINT, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 1
    assert saved["step"] == 4  # continued from step 2, not restarted
    assert [h["epoch"] for h in saved["history"]] == [1, 2]
    assert second["training"]["duration_s"] >= first["training"]["duration_s"]

    entry = W.entry(weights, "attributes")
    assert entry.training["command"] == "test run 2"
    assert entry.preprocessing["input_size"] == 64
    classifier = AttributeClassifier.from_weights(weights)
    assert list(classifier.heads) == list(L.HEAD_NAMES)
    assert classifier.heads["category"] == L.fixed_vocabulary("category")
    probs = classifier.predict(
        [classifier.prepare(torch.zeros(80, 60, 3, dtype=torch.uint8).numpy(), None, None)]
    )
    assert set(probs[0]) == set(L.HEAD_NAMES)
    assert json.loads((out / "entry.json").read_text())["sha256"] == entry.sha256


def test_resume_refuses_a_checkpoint_with_other_heads(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(L, "min_train_images", lambda head: 1)
    config = T.TrainConfig(
        data_root=data_root,
        out_dir=tmp_path / "run",
        epochs=1,
        batch_size=8,
        input_size=64,
        canvas_size=72,
        limit_steps=1,
    )
    T.train(config, tmp_path / "weights", device=CPU, resume=False, command="first")
    path = tmp_path / "run" / T.CHECKPOINT
    saved = torch.load(path, map_location="cpu", weights_only=False)
    saved["heads"] = {**saved["heads"], "gender": ("Men", "Women", "Robots")}
    torch.save(saved, path)
    with pytest.raises(ValueError, match="other heads"):
        T.train(config, tmp_path / "weights", device=CPU, resume=True, command="second")
