"""`fashionstream import keras`: a VGG19-style Keras classifier saved as .h5 (built here with
random weights: no one's weights are needed) becomes an ONNX graph and a model spec whose
outputs equal Keras's on real catalogue photos, and runs as a plug-in head of the tagger.
The pipeline test (tests/integration/test_plugins_pipeline.py) finds its head in Postgres."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fashionstream.app.cli import main
from fashionstream.core.settings import REPO_ROOT, Backend, Settings
from models.attributes.crop import prepare_crop
from models.detection.ccp import read_rgb
from models.onnx_models.classifier import OnnxSpecClassifier
from models.onnx_models.sessions import session
from models.onnx_models.spec import load_spec
from models.tagger import FashionTagger
from tests.support.plugin_models import KERAS_LABELS, vgg_style_keras_classifier

pytestmark = pytest.mark.models

CATALOGUE = REPO_ROOT / "fashionstream" / "app" / "samples" / "catalogue"
# Keras and ONNX Runtime compute the same float32 network: probabilities within this
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keras")
    model, labels = vgg_style_keras_classifier(folder)
    code = main(
        [
            "import",
            "keras",
            str(model),
            "--head",
            "usage_vgg",
            "--labels",
            str(labels),
            "-o",
            str(folder / "out"),
            "--preprocessing",
            "caffe",
            "--licence",
            "Apache-2.0",
        ]
    )
    assert code == 0
    return folder


def test_the_graph_computes_what_keras_computes_on_real_photos(imported: Path) -> None:
    import keras

    spec_path = imported / "out" / "vgg_style.spec.json"
    spec = load_spec(spec_path)
    assert (spec.kind, spec.output.head, spec.labels()) == ("classifier", "usage_vgg", KERAS_LABELS)
    assert (spec.input.layout, spec.input.channels, spec.input.size) == ("NHWC", "BGR", (64, 64))
    assert spec.output.decode == "probabilities"  # the model ends in a softmax
    classifier = OnnxSpecClassifier(session(spec_path.parent / spec.file, 2), spec)
    crops = [prepare_crop(read_rgb(p), None, None, 160) for p in sorted(CATALOGUE.glob("*.jpg"))]
    ours = np.stack([p["usage_vgg"] for p in classifier.predict(crops)])
    model = keras.models.load_model(imported / "vgg_style.h5", compile=False)
    theirs = model.predict(classifier.inputs(crops), verbose=0)
    assert np.abs(ours - theirs).max() <= TOLERANCE
    # the comparison can tell a wrong conversion: the probabilities are far from uniform and
    # move with the photo
    assert ours.max(axis=1).mean() > 0.5
    assert np.ptp(ours, axis=0).max() > 0.1


def test_the_imported_classifier_runs_as_a_tagger_head(imported: Path, tmp_path: Path) -> None:
    tagger = FashionTagger.from_settings(
        Settings(
            state_dir=tmp_path,
            backend=Backend.ONNX,
            torch_threads=2,
            plugins=(imported / "out" / "vgg_style.spec.json",),
        )
    )
    assert "+plugin:vgg_style-" in tagger.model_version
    photos = [read_rgb(p) for p in sorted(CATALOGUE.glob("*.jpg"))[18:22]]
    garments = [g for tags in tagger.tag(photos) for g in tags.garments]
    assert garments
    for garment in garments:
        assert garment.attributes["usage_vgg"].label in KERAS_LABELS
        assert sum(garment.probabilities["usage_vgg"].values()) == pytest.approx(1.0, abs=1e-4)


def test_labels_that_do_not_fit_the_model_are_refused(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    argv = ["import", "keras", str(imported / "vgg_style.h5"), "--head", "usage_vgg"]
    code = main([*argv, "--labels", str(labels), "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "import keras: labels: 3 given, the model has 5 outputs"
    assert not (tmp_path / "out" / "vgg_style.spec.json").exists()


def test_without_tensorflow_import_keras_names_the_extra(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("tensorflow", "tf2onnx"):
            sys.modules[name] = None
        from fashionstream.app.cli import main
        sys.exit(main(["import", "keras", "m.h5", "--head", "x", "--labels", "l.txt",
                       "-o", {str(tmp_path)!r}]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("pip install -e '.[keras]')")
    assert "needs TensorFlow (missing here: tensorflow, tf2onnx)" in result.stderr
