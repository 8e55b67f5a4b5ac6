"""The person-box data path: YOLO labels, Roboflow source and recording names, reading an
export out of a real git repository at a pinned commit, the split by recording, and the
camera-like training views."""

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.people import dataset as D
from models.people.augment import PeopleViews, PersonPhoto, ViewConfig, read_coco_photos
from models.people.sources import (
    GitSnapshot,
    PeopleDataset,
    group_name,
    parse_yolo_labels,
    read_dataset,
    source_name,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 0.5 0.5 0.2 0.4", [[0.4, 0.3, 0.6, 0.7]]),
        # a polygon (Roboflow's sheared boxes): its enclosing box
        ("0 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6", [[0.1, 0.2, 0.3, 0.6]]),
        ("1 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2 0.2", [[0.4, 0.4, 0.6, 0.6]]),  # class 1 is not ours
        ("0 0.95 0.5 0.2 0.2", [[0.85, 0.4, 1.0, 0.6]]),  # clipped to the image
        ("0 0.5 0.5 0.0 0.2", []),  # no width: dropped
        ("\n\n", []),
    ],
)
def test_yolo_labels_become_person_boxes(text: str, expected: list[list[float]]) -> None:
    boxes = parse_yolo_labels(text, person_classes=(0,))
    np.testing.assert_allclose(boxes, np.asarray(expected, np.float32).reshape(-1, 4), atol=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.2", "3 coordinates"),
        ("0 a b c d", "not numbers"),
        ("x 1 1 1 1", "not numbers"),
    ],
)
def test_malformed_label_lines_are_errors_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_yolo_labels(text, person_classes=(0,))


@pytest.mark.parametrize(
    ("file_name", "source", "group"),
    [
        ("bb_V0033_I0009840_jpg.rf.0a1b2c.jpg", "bb_V0033_I0009840_jpg", "bb_V0033_I#"),
        ("standing_8_11_23-47-_jpg.rf.ff00.jpg", "standing_8_11_23-47-_jpg", "standing_8_11_23-#-"),
        ("000000286673_jpg.rf.84fe.jpg", "000000286673_jpg", "000000286673"),  # a COCO id
        ("frame_5700_jpg.rf.1.jpg", "frame_5700_jpg", "frame_#"),
        ("plain.jpg", "plain", "plain"),
    ],
)
def test_roboflow_names_give_source_photo_and_recording(
    file_name: str, source: str, group: str
) -> None:
    assert source_name(file_name) == source
    assert group_name(source) == group


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _jpeg(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    cv2.imwrite(str(path), image)


@pytest.fixture
def export_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repository holding a small Roboflow-style export: two augmented copies of one
    photo, one 1280-px photo of another recording, a label without an image and an image in a
    folder that is not a split."""
    repo = tmp_path / "repo"
    export = repo / "export"
    (export / "train" / "labels").mkdir(parents=True)
    for copy in ("aaa", "bbb"):
        _jpeg(export / "train" / "images" / f"cam_1_jpg.rf.{copy}.jpg", 64, 48)
        # one label file without its final newline, as some exports write them
        text = "0 0.5 0.5 0.25 0.5\n" if copy == "aaa" else "0 0.5 0.5 0.25 0.5"
        (export / "train" / "labels" / f"cam_1_jpg.rf.{copy}.txt").write_text(text)
    _jpeg(export / "valid" / "images" / "other_7_jpg.rf.ccc.jpg", 1280, 720)
    (export / "valid" / "labels").mkdir(parents=True)
    (export / "valid" / "labels" / "other_7_jpg.rf.ccc.txt").write_text(
        "0 0.25 0.5 0.1 0.5\n1 0.75 0.5 0.1 0.5\n"
    )
    (export / "valid" / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    _jpeg(export / "extras" / "images" / "x_jpg.rf.d.jpg", 32, 32)
    _git(tmp_path, "init", "-q", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "export")
    return repo / ".git", _git(repo, "rev-parse", "HEAD")


def _dataset(commit: str, classes: tuple[int, ...] = (0, 1)) -> PeopleDataset:
    return PeopleDataset(
        name="toy",
        repo="someone/toy",
        commit=commit,
        folder="export",
        licence="CC BY 4.0",
        attribution="toy export",
        person_classes=classes,
        copies_per_source=2,
        what="made by the test",
    )


def test_an_export_is_read_from_the_pinned_commit(export_repo: tuple[Path, str]) -> None:
    git_dir, commit = export_repo
    images = list(read_dataset(_dataset(commit), git_dir))
    assert [(i.source, i.group, len(i.boxes)) for i in images] == [
        ("cam_1_jpg", "cam_#", 1),
        ("cam_1_jpg", "cam_#", 1),
        ("other_7_jpg", "other_#", 2),
    ]
    assert all(cv2.imdecode(np.frombuffer(i.data, np.uint8), 1) is not None for i in images)
    only_zero = list(read_dataset(_dataset(commit, classes=(0,)), git_dir))
    assert len(only_zero[2].boxes) == 1


def test_a_commit_the_snapshot_lacks_is_a_clear_error(export_repo: tuple[Path, str]) -> None:
    git_dir, _ = export_repo
    with pytest.raises(ValueError, match="has no commit"):
        GitSnapshot(git_dir, "0" * 40)


def test_the_built_set_splits_by_recording_and_scales_boxes(
    export_repo: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_dir, commit = export_repo
    # the recording `other_#` is drawn for validation, `cam_#` for training
    monkeypatch.setattr(D, "is_validation", lambda key: key.endswith("other_#"))
    out = tmp_path / "built"
    summary = D.build_people_set(
        {"toy": git_dir}, out, datasets=[_dataset(commit)], report=lambda _: None
    )
    assert summary.images == {"train": 2, "val": 1}
    assert summary.people == {"train": 2, "val": 2}
    val = json.loads((out / "val.json").read_text())
    image = val["images"][0]
    # 1280x720 is written 640 wide; boxes follow the scale
    assert (image["width"], image["height"]) == (640, 360)
    written = cv2.imread(str(out / "images" / image["file_name"]))
    assert written is not None
    assert written.shape == (360, 640, 3)
    np.testing.assert_allclose(val["annotations"][0]["bbox"], [128.0, 90.0, 64.0, 180.0])
    assert commit in (out / "SOURCES.md").read_text()
    photos = read_coco_photos(out / "train.json", out / "images")
    np.testing.assert_allclose(photos[0].boxes, [[24.0, 12.0, 40.0, 36.0]])


def test_split_draws_are_stable_and_near_the_share() -> None:
    keys = [f"set/recording_{i}" for i in range(4000)]
    drawn = [D.is_validation(k) for k in keys]
    assert drawn == [D.is_validation(k) for k in keys]
    assert 0.08 < sum(drawn) / len(keys) < 0.12


def _photo_files(tmp_path: Path, n: int) -> list[PersonPhoto]:
    photos = []
    for i in range(n):
        path = tmp_path / f"p{i}.jpg"
        _jpeg(path, 320, 240)
        photos.append(PersonPhoto(path, np.array([[100, 40, 140, 200]], np.float32)))
    return photos


def test_views_are_deterministic_per_epoch_and_keep_boxes_in_view(tmp_path: Path) -> None:
    photos = _photo_files(tmp_path, 6)
    views = PeopleViews(photos, ViewConfig(size=128), seed=3)
    first = [views.view(i) for i in range(6)]
    again = [views.view(i) for i in range(6)]
    for (a, boxes_a), (b, boxes_b) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(boxes_a, boxes_b)
        assert a.shape == (128, 128, 3)
        assert (boxes_a >= 0).all()
        assert (boxes_a <= 128).all()
        assert ((boxes_a[:, 3] - boxes_a[:, 1]) >= ViewConfig().min_height).all()
    views.set_epoch(1)
    assert any(not np.array_equal(first[i][0], views.view(i)[0]) for i in range(6))


def test_an_epoch_can_be_a_subset_drawn_anew(tmp_path: Path) -> None:
    photos = _photo_files(tmp_path, 10)
    views = PeopleViews(photos, ViewConfig(size=64), seed=0, views_per_epoch=4)
    assert len(views) == 4
    first = views.order[:4].tolist()
    views.set_epoch(1)
    assert views.order[:4].tolist() != first
    tensor, target = views[0]
    assert tensor.shape == (3, 64, 64)
    assert target["labels"].tolist() == [1] * len(target["boxes"])
