"""A user's own ONNX models plugged in by configuration (FASHIONSTREAM_PLUGINS): a classifier
replaces or adds an attribute head, a person detector replaces ours, the model version names
each plug-in, and a spec that does not match its graph stops the tagger at start-up naming the
field. On real catalogue photos and camera frames."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashionstream.core.settings import REPO_ROOT, Backend, Settings
from models.attributes.calibration import UNKNOWN
from models.attributes.labels import labels_agreeing
from models.detection import ccp
from models.onnx_models.spec import SpecError
from models.tagger import FashionTagger
from models.tags import ImageTags
from tests.support.pipeline import RUNTIME_INSTALL
from tests.support.plugin_models import PATTERNS, gender_plugin, pattern_plugin

pytestmark = pytest.mark.models

WEIGHTS = REPO_ROOT / "weights"
FIXTURES = REPO_ROOT / "tests" / "fixtures"
CATALOGUE = REPO_ROOT / "fashionstream" / "app" / "samples" / "catalogue"
CCP = REPO_ROOT.parent / "shared" / "data" / "street" / "ccp"


def _images() -> list[np.ndarray]:
    photos = [ccp.read_rgb(p) for p in sorted(CATALOGUE.glob("*.jpg"))[:3]]
    samples = ccp.iter_samples(FIXTURES / "ccp", ccp.image_ids(FIXTURES / "ccp"))
    return photos + [s.image for s in samples][:3]


def _tagger(state: Path, *plugins: Path) -> FashionTagger:
    return FashionTagger.from_settings(
        Settings(state_dir=state, backend=Backend.ONNX, torch_threads=2, plugins=plugins)
    )


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plugins")
    gender_plugin(folder)
    pattern_plugin(folder)
    return folder


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> list[ImageTags]:
    return _tagger(tmp_path_factory.mktemp("state")).tag(_images())


def test_a_plugged_head_replaces_the_shipped_one_and_an_added_one_joins_it(
    plugin_dir: Path, shipped: list[ImageTags], tmp_path: Path
) -> None:
    tagger = _tagger(tmp_path, plugin_dir / "my_gender.spec.json", plugin_dir / "pattern.spec.json")
    assert "+plugin:my_gender-" in tagger.model_version
    assert "+plugin:pattern-" in tagger.model_version
    plugged = tagger.tag(_images())
    garments = 0
    for ours, theirs in zip(plugged, shipped, strict=True):
        assert len(ours.garments) == len(theirs.garments)
        for mine, reference in zip(ours.garments, theirs.garments, strict=True):
            garments += 1
            # the Keras-style graph is the shipped gender head behind NHWC, BGR and its own
            # label names: the same probabilities, under our labels, on the same crops
            assert mine.probabilities["gender"].keys() == reference.probabilities["gender"].keys()
            for label, p in reference.probabilities["gender"].items():
                assert mine.probabilities["gender"][label] == pytest.approx(p, abs=1e-4)
            # the added head: every pattern, probabilities summing to one
            assert set(mine.probabilities["pattern"]) == set(PATTERNS)
            assert sum(mine.probabilities["pattern"].values()) == pytest.approx(1.0, abs=1e-4)
            assert mine.attributes["pattern"].label in PATTERNS
            # the shipped heads the plug-ins leave alone are untouched
            for head in ("baseColour", "usage"):
                assert mine.attributes[head] == reference.attributes[head]
            assert mine.probabilities["articleType"] == pytest.approx(
                reference.probabilities["articleType"], abs=1e-6
            )
            # the stated article type follows the wearer's stated gender, which the plugged
            # head states without a calibrated threshold (the shipped one may say unknown)
            article, worn_by = mine.attributes["articleType"], mine.attributes["gender"].label
            if worn_by == reference.attributes["gender"].label:
                assert article == reference.attributes["articleType"]
            elif article.label not in (UNKNOWN, reference.attributes["articleType"].label):
                assert article.label in (
                    labels_agreeing(mine.category, "articleType", worn_by) or ()
                )
    assert garments >= 5


def test_a_plugged_person_detector_replaces_ours(tmp_path: Path) -> None:
    # the shipped YOLOX-Nano, brought as a user's own person detector under another name
    shipped_spec = json.loads((WEIGHTS / "people-yolox_nano.spec.json").read_text())
    shutil.copy(WEIGHTS / shipped_spec["file"], tmp_path / "my_people.onnx")
    spec = {**shipped_spec, "name": "my_people", "file": "my_people.onnx"}
    (tmp_path / "my_people.spec.json").write_text(json.dumps(spec))
    frames = [ccp.read_rgb(p) for p in sorted((FIXTURES / "frames").glob("*.jpg"))]
    plugged = _tagger(tmp_path / "state", tmp_path / "my_people.spec.json")
    reference = _tagger(tmp_path / "state")
    assert "+plugin:my_people-" in plugged.model_version
    assert "+people:" not in plugged.model_version
    ours, theirs = plugged.tag(frames), reference.tag(frames)
    assert sum(len(t.people) for t in theirs) >= 2
    for a, b in zip(ours, theirs, strict=True):
        assert [p.box for p in a.people] == [p.box for p in b.people]


def _broken(plugin_dir: Path, tmp_path: Path, **changes: object) -> Path:
    raw = json.loads((plugin_dir / "pattern.spec.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw[section] = {**raw[section], field: value}
        else:
            raw[section] = value
    shutil.copy(plugin_dir / "pattern.onnx", tmp_path / "pattern.onnx")
    path = tmp_path / "broken.spec.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"classes": ["plain", "striped"]}, "classes"),
        ({"input__name": "pixels"}, "input.name"),
        ({"input__layout": "NHWC"}, "input.layout"),
        ({"output__index": 1}, "output.index"),
        ({"output__head": ""}, "output.head"),
        ({"output__decode": "yolox"}, "output.decode"),
        ({"input__size": [64, 48]}, "input.size"),
        ({"sha256": "0" * 64}, "sha256"),
    ],
)
def test_a_spec_that_does_not_fit_its_graph_stops_the_tagger_naming_the_field(
    plugin_dir: Path, tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(SpecError, match=rf"model spec pattern: .*{field}"):
        _tagger(tmp_path / "state", _broken(plugin_dir, tmp_path, **changes))


def _yolox_as(tmp_path: Path, name: str, class_map: dict[str, str]) -> Path:
    """The shipped YOLOX-Nano (COCO) brought as a user's own detector under `name`."""
    shipped_spec = json.loads((WEIGHTS / "people-yolox_nano.spec.json").read_text())
    shutil.copy(WEIGHTS / shipped_spec["file"], tmp_path / f"{name}.onnx")
    spec = {**shipped_spec, "name": name, "file": f"{name}.onnx", "class_map": class_map}
    path = tmp_path / f"{name}.spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_plugged_garment_detector_replaces_ours_with_boxes_for_masks(tmp_path: Path) -> None:
    # COCO's bags as a user's own bag detector: it replaces the garment detectors on whole
    # images and on person crops
    spec = _yolox_as(tmp_path, "my_bags", {"handbag": "bag", "backpack": "bag", "suitcase": "bag"})
    tagger = _tagger(tmp_path / "state", spec)
    assert tagger.model_version.startswith("det:my_bags-")
    assert "+crops:" not in tagger.model_version
    # street photos of ../shared/data's CCP set with a handbag (0047), a backpack and a
    # handbag (0069), looked at
    photos = [ccp.read_rgb(CCP / "images" / f"{n}.jpg") for n in ("0047", "0069")]
    found = [g for tags in tagger.tag(photos) for g in tags.garments]
    assert len(found) >= 2
    assert {g.category for g in found} == {"bag"}
    for garment in found:
        # the box stands in for the mask: the mask fills its box
        x0, y0, x1, y1 = garment.box
        assert garment.mask.area() == pytest.approx((x1 - x0) * (y1 - y0), rel=0.1, abs=50)


def test_a_detector_mapping_onto_people_and_garments_is_refused(tmp_path: Path) -> None:
    spec = _yolox_as(tmp_path, "mixed", {"person": "person", "handbag": "bag"})
    with pytest.raises(SpecError, match=r"class_map: onto 'person' alone \(a person detector\)"):
        _tagger(tmp_path / "state", spec)


def test_two_plugins_for_one_head_are_refused(plugin_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="another plug-in gives 'pattern'"):
        _tagger(tmp_path, plugin_dir / "pattern.spec.json", plugin_dir / "pattern.spec.json")


def test_a_worker_with_a_plugin_that_does_not_fit_takes_nothing(
    plugin_dir: Path, tmp_path: Path
) -> None:
    broken = _broken(plugin_dir, tmp_path, classes=["plain", "striped"])
    env = {
        **os.environ,
        "PYTHONPATH": str(RUNTIME_INSTALL),  # as the runtime install: no training stack
        "FASHIONSTREAM_PLUGINS": str(broken),
        "FASHIONSTREAM_STATE_DIR": str(tmp_path / "state"),
        # nothing listens here: the worker must stop before it looks for a broker
        "FASHIONSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "fashionstream", "worker"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "model spec pattern: classes: 2 classes" in lines[0]
