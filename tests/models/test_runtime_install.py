"""The runtime install (`pip install 'fashionstream[all]'`: ONNX Runtime, no torch) runs what
it is for: the worker, the API, the demo, the report, `track`, `annotate` and the benches. Each
check runs in a fresh interpreter whose sitecustomize (tests/support/runtime_install) makes any
import of the training stack fail, so a torch import on the runtime's path fails here. The
suite's real workers run the same way (tests/support/pipeline.py: running_worker)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fashionstream.core.settings import REPO_ROOT, Backend, Settings
from models.detection import ccp
from models.tagger import FashionTagger
from models.tags import ImageTags
from tests.support.pipeline import RUNTIME_INSTALL

pytestmark = pytest.mark.models

FIXTURES = REPO_ROOT / "tests" / "fixtures"
CLIP = FIXTURES / "video" / "people_3.mp4"
# what the runtime commands import (their handlers import these when they run)
RUNTIME_MODULES = (
    "stream_processors.worker",
    "stream_processors.app",
    "fashionstream.app.api.app",
    "fashionstream.app.demo",
    "fashionstream.app.report.page",
    "fashionstream.app.similar",
    "fashionstream.app.video_tracking",
    "fashionstream.app.association",
    "fashionstream.app.video_annotation",
    "fashionstream.app.bench_pipeline",
    "fashionstream.app.bench_video",
    "fashionstream.app.bench_live",
    "models.tagger",
)


def _without_the_training_stack(
    argv: list[str], state_dir: Path, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(RUNTIME_INSTALL),
        "FASHIONSTREAM_STATE_DIR": str(state_dir),
        "FASHIONSTREAM_TORCH_THREADS": "2",
    }
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _images() -> list[np.ndarray]:
    samples = ccp.iter_samples(FIXTURES / "ccp", ccp.image_ids(FIXTURES / "ccp"))
    frames = [ccp.read_rgb(p) for p in sorted((FIXTURES / "frames").glob("*.jpg"))]
    return [s.image for s in samples][:4] + frames


def _summary(tags: list[ImageTags]) -> list[list[tuple[str, float, str]]]:
    return [
        [(g.category, round(g.score, 3), g.attributes["articleType"].label) for g in t.garments]
        for t in tags
    ]


def test_the_blocker_blocks(tmp_path: Path) -> None:
    # the checks below must be able to fail
    result = _without_the_training_stack(["-c", "import torch"], tmp_path)
    assert result.returncode != 0
    assert "torch is not part of the runtime install" in result.stderr


def test_the_runtime_tags_as_the_full_install_does_without_torch(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import importlib, json, sys
        for name in {RUNTIME_MODULES!r}:
            importlib.import_module(name)
        from tests.models.test_runtime_install import _images, _summary
        from fashionstream.core.settings import Settings
        from models.tagger import FashionTagger
        tagger = FashionTagger.from_settings(Settings.from_env())
        print(json.dumps({{
            "version": tagger.model_version,
            "tags": _summary(tagger.tag(_images())),
            "training_stack": sorted(m for m in sys.modules if m.split(".")[0] in
                                     ("torch", "torchvision", "onnx")),
        }}))
        """
    )
    result = _without_the_training_stack(["-c", script], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lean = json.loads(result.stdout.strip().splitlines()[-1])
    assert lean["training_stack"] == []
    # the same tags as this interpreter, which has torch, on the same onnx backend
    full = FashionTagger.from_settings(Settings(state_dir=tmp_path / "full", backend=Backend.ONNX))
    assert lean["version"] == full.model_version
    expected = json.loads(json.dumps(_summary(full.tag(_images()))))
    assert lean["tags"] == expected
    assert sum(len(garments) for garments in expected) >= 5


def test_track_and_annotate_run_without_torch(tmp_path: Path) -> None:
    result = _without_the_training_stack(
        ["-m", "fashionstream", "track", str(CLIP), "--json"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(json.loads(result.stdout)["sightings"]) == 3  # the clip's three people
    out = tmp_path / "annotated.png"
    frame = FIXTURES / "frames" / "intel_person_0120.jpg"
    result = _without_the_training_stack(
        ["-m", "fashionstream", "annotate", str(frame), "-o", str(out)], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.stat().st_size > 10_000


def test_bench_tagger_runs_without_torch(tmp_path: Path) -> None:
    result = _without_the_training_stack(
        [
            "-m",
            "fashionstream",
            "bench",
            "tagger",
            "--video",
            str(CLIP),
            "--frames",
            "4",
            "--repeats",
            "1",
            "--batch-sizes",
            "4",
            "--garments",
            "track",
            "--json",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)["results"]
    assert [(r["backend"], r["device"]) for r in rows] == [("onnx", "cpu")]
    assert rows[0]["fps_median"] > 0


def test_the_torch_backend_in_the_runtime_install_says_what_to_install(tmp_path: Path) -> None:
    frame = FIXTURES / "frames" / "intel_person_0120.jpg"
    result = _without_the_training_stack(
        [
            "-m",
            "fashionstream",
            "annotate",
            str(frame),
            "-o",
            str(tmp_path / "a.png"),
            "--backend",
            "torch",
        ],
        tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pip install 'fashionstream[train]'" in result.stderr.strip().splitlines()[-1]
