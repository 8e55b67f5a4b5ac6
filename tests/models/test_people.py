"""The shipped person detector, an imported pretrained ONNX model: its manifest entry, spec,
licence and pinned source agree with the file; it finds the people of camera frames (counted by
eye); the import step is reproducible from the published graph and refuses any other file; and
`eval people` scores it beside the garment detector's people on the same frames."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from fashionstream.app.cli import main
from fashionstream.core.settings import REPO_ROOT, Settings
from models import weights as W
from models.onnx_models.detector import OnnxSpecDetector
from models.onnx_models.importer import ARCHITECTURE, import_detector
from models.onnx_models.known_specs import known_template
from models.onnx_models.spec import SpecError, load_spec
from models.runtime.placement import resolve_runtime
from models.runtime.shipped import people_detector

pytestmark = pytest.mark.models

WEIGHTS = REPO_ROOT / "weights"
FRAMES = REPO_ROOT / "tests" / "fixtures" / "frames"
VIDEOS = REPO_ROOT.parent / "shared" / "data" / "videos"
THRESHOLD = Settings().person_threshold


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return np.ascontiguousarray(image[:, :, ::-1])


def _frame(video: Path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = capture.read()
    capture.release()
    assert ok, f"{video}: no frame {index}"
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> OnnxSpecDetector:
    runtime = resolve_runtime("onnx", "cpu", 2, tmp_path_factory.mktemp("onnx"))
    found, _ = people_detector(WEIGHTS, runtime, threshold=0.0)
    assert isinstance(found, OnnxSpecDetector)
    return found


def test_the_entry_spec_licence_and_source_describe_the_shipped_file() -> None:
    entry = W.entry(WEIGHTS, "people")
    path = entry.verified_path(WEIGHTS)
    assert entry.architecture == ARCHITECTURE
    spec = load_spec(WEIGHTS / entry.spec)
    assert (spec.file, spec.sha256) == (entry.file, entry.sha256)
    assert W.sha256_of(path) == spec.sha256
    template = known_template(spec.name)
    assert spec.source.sha256 == template["source"]["sha256"]  # the published file, pinned
    assert spec.source.licence == "Apache-2.0"
    licence = (WEIGHTS / spec.source.licence_file).read_text()
    assert "Apache License" in licence
    assert "Version 2.0" in licence
    assert entry.training["imported"]["commit"] == spec.source.commit
    val = entry.metrics["people_val"]
    assert val["images"] == 1208  # the validation share of the built set (by recording)
    assert 0.0 < val["person_ap50"] <= 1.0


def test_a_manifest_naming_another_file_than_its_spec_is_refused(tmp_path: Path) -> None:
    for name in ("manifest.json", "people-yolox_nano.onnx", "people-yolox_nano.spec.json"):
        shutil.copy(WEIGHTS / name, tmp_path / name)
    entry = W.entry(tmp_path, "people")
    W.write_entry(tmp_path, dataclasses.replace(entry, sha256="0" * 64))
    runtime = resolve_runtime("onnx", "cpu", 2, tmp_path / "onnx")
    with pytest.raises(W.WeightsError, match="the manifest names"):
        people_detector(tmp_path, runtime, threshold=0.35)


def _people(detector: OnnxSpecDetector, image: np.ndarray) -> int:
    (found,) = detector.detect([image])
    return int((found.scores >= THRESHOLD).sum())


def test_one_person_in_each_store_frame_and_nobody_in_the_empty_room(
    detector: OnnxSpecDetector,
) -> None:
    counts = {p.stem: _people(detector, _rgb(p)) for p in sorted(FRAMES.glob("*.jpg"))}
    assert counts == {
        "intel_empty_0000": 0,
        "intel_person_0120": 1,
        "intel_person_0360": 1,
        "intel_person_1320": 1,
    }


# (clip, frame index, people counted by eye, people the shipped detector finds at the default
# threshold): the expected figure is the measured one, within 2, and never more than are there
CROWDS = [
    ("tram_stop_cctv_640x480.mp4", 90, 18, 15),
    ("street_crossing_640x360.mp4", 90, 10, 9),
]


@pytest.mark.parametrize(("video", "index", "counted", "measured"), CROWDS)
def test_crowds_on_shared_clips_find_the_measured_share_of_the_people(
    detector: OnnxSpecDetector, video: str, index: int, counted: int, measured: int
) -> None:
    if not (VIDEOS / video).is_file():
        pytest.skip(f"{VIDEOS / video} is not here (../shared/data/videos)")
    found = _people(detector, _frame(VIDEOS / video, index))
    assert abs(found - measured) <= 2, f"{found} people found, {measured} when measured"
    assert found <= counted, f"{found} people found, {counted} counted by eye"


def _published_like(shipped: Path) -> bytes:
    """The shipped graph with the fixed 416x416 input the published file has: what the import
    step starts from."""
    model = onnx.load(str(shipped))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim in dims[2:]:
        dim.ClearField("dim_param")
        dim.dim_value = 416
    data: bytes = model.SerializeToString()
    return data


def test_importing_the_published_graph_gives_the_shipped_detector(tmp_path: Path) -> None:
    entry = W.entry(WEIGHTS, "people")
    spec = load_spec(WEIGHTS / entry.spec)
    published = _published_like(WEIGHTS / entry.file)
    template = known_template(spec.name)
    template["source"]["sha256"] = hashlib.sha256(published).hexdigest()
    imported = import_detector(
        template,
        published,
        "licence text",
        tmp_path,
        entry_name="people",
        dynamic=True,
        command="test",
    )
    assert imported.file == entry.file
    ours = OnnxSpecDetector.from_spec_file(tmp_path / imported.spec, threads=2, threshold=0.1)
    shipped = OnnxSpecDetector.from_spec_file(WEIGHTS / entry.spec, threads=2, threshold=0.1)
    frame = _rgb(FRAMES / "intel_person_0120.jpg")
    (a,), (b,) = ours.detect([frame]), shipped.detect([frame])
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert (tmp_path / "licences" / f"{spec.name}.LICENSE").read_text() == "licence text"


def test_importing_any_other_file_is_refused_naming_the_pin(tmp_path: Path) -> None:
    entry = W.entry(WEIGHTS, "people")
    template = known_template(load_spec(WEIGHTS / entry.spec).name)
    with pytest.raises(SpecError, match=r"source\.sha256"):
        import_detector(
            template,
            (WEIGHTS / entry.file).read_bytes() + b"\0",
            "licence",
            tmp_path,
            entry_name="people",
            dynamic=True,
            command="test",
        )
    assert not (tmp_path / W.MANIFEST).exists()


def test_the_import_command_reads_a_file_and_says_what_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = W.entry(WEIGHTS, "people")
    spec = load_spec(WEIGHTS / entry.spec)
    published = tmp_path / "published.onnx"
    published.write_bytes(_published_like(WEIGHTS / entry.file))
    template = known_template(spec.name)
    template["source"]["sha256"] = hashlib.sha256(published.read_bytes()).hexdigest()
    (tmp_path / "template.json").write_text(json.dumps(template))
    out = tmp_path / "weights"
    args = ["import", "detector", str(tmp_path / "template.json"), "--file", str(published)]
    args += ["--weights", str(out), "--name", "cameras"]
    assert main(args) == 2  # no licence text: nothing is imported without one
    assert "licence" in capsys.readouterr().err
    (tmp_path / "LICENSE").write_text("Apache License Version 2.0")
    assert main([*args, "--licence-file", str(tmp_path / "LICENSE")]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["entry"] == "cameras"
    assert W.entry(out, "cameras").verified_path(out).name == written["file"]


def test_eval_people_scores_both_detectors_on_the_same_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASHIONSTREAM_STATE_DIR", str(tmp_path / "state"))
    boxes = {  # the store frames' one person, boxed by eye (COCO xywh)
        "intel_person_0120.jpg": [322.0, 15.0, 140.0, 425.0],
        "intel_person_0360.jpg": [320.0, 5.0, 178.0, 420.0],
    }
    coco = {
        "images": [
            {"id": i, "file_name": name, "width": 640, "height": 480}
            for i, name in enumerate(boxes, 1)
        ],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": box, "area": 1.0, "iscrowd": 0}
            for i, box in enumerate(boxes.values(), 1)
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "people.json").write_text(json.dumps(coco))
    args = ["eval", "people", "--coco", str(tmp_path / "people.json"), "--images", str(FRAMES)]
    assert main([*args, "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main([*args, "--garment-detector", "--json"]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert ours["people"] == theirs["people"] == 2
    assert ours["detector"].startswith("person detector yolox_nano-")
    assert theirs["detector"].startswith("garment detector ")
    # one large person per frame: both detectors find them
    assert ours["recall"] == pytest.approx(1.0)
    assert theirs["recall"] == pytest.approx(1.0)
