"""`train people` end to end on a tiny set of the committed camera frames: it trains, checkpoints,
resumes from the checkpoint without redoing a step, scores the validation file, and ships fp16
weights + a manifest entry that the tagger's loader reads back."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionstream.app.cli import main
from models import weights as W
from models.people.boxes import PersonBoxes
from models.people.runner import TorchPeopleDetector, load_people

pytestmark = pytest.mark.models

FRAMES = Path(__file__).resolve().parent.parent / "fixtures" / "frames"
# the person in each frame, boxed by eye on the 640x480 fixture (frame 0 is the empty room)
PEOPLE = {
    "intel_empty_0000.jpg": [],
    "intel_person_0120.jpg": [[322.0, 15.0, 140.0, 425.0]],
    "intel_person_0360.jpg": [[320.0, 5.0, 178.0, 420.0]],
}


@pytest.fixture
def people_set(tmp_path: Path) -> Path:
    root = tmp_path / "people"
    (root / "images").mkdir(parents=True)
    content: dict[str, list[dict[str, object]]] = {"images": [], "annotations": []}
    for number, (name, boxes) in enumerate(PEOPLE.items(), 1):
        (root / "images" / name).symlink_to(FRAMES / name)
        content["images"].append({"id": number, "file_name": name, "width": 640, "height": 480})
        for box in boxes:
            content["annotations"].append(
                {
                    "id": len(content["annotations"]) + 1,
                    "image_id": number,
                    "category_id": 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    content["categories"] = [{"id": 1, "name": "person"}]
    for split in ("train", "val"):
        (root / f"{split}.json").write_text(json.dumps(content))
    return root


def test_train_checkpoints_resumes_and_ships(
    people_set: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights_dir = tmp_path / "weights"
    monkeypatch.setenv("FASHIONSTREAM_WEIGHTS_DIR", str(weights_dir))
    out = tmp_path / "run"
    args = ["train", "people", "--data", str(people_set), "--out", str(out), "--threads", "2"]
    args += ["--batch-size", "2", "--views-per-epoch", "3", "--workers", "0"]

    assert main([*args, "--max-iterations", "1", "--no-ship"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["iterations"] == 1
    saved = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert (saved["step"], saved["epoch"]) == (1, 0)
    assert not weights_dir.exists()

    # the epoch has 2 steps (3 views in batches of 2): resuming runs only the second
    assert main([*args, "--resume"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["iterations"] == 2
    entry = W.entry(weights_dir, "people")
    assert entry.sha256 == W.sha256_of(weights_dir / entry.file)
    assert entry.training["iterations"] == 2
    val = entry.metrics["people_val"]
    assert (val["images"], val["people"]) == (3, 2)
    assert 0.0 <= val["person_ap50"] <= 1.0

    model, config = load_people(weights_dir / entry.file)
    assert next(model.parameters()).dtype == torch.float32
    frame = np.zeros((480, 640, 3), np.uint8)
    (found,) = TorchPeopleDetector(model, config, torch.device("cpu"), 0.0).detect([frame])
    assert isinstance(found, PersonBoxes)
    assert config.min_size == 480
