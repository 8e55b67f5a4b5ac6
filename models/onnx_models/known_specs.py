"""The imports this project ships, by name: a spec template each under `known/` (a model spec
less the shipped file's name and sha256, which the import writes)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from models.onnx_models.spec import SpecError

# `import detector` (ONNX sources) and `import tf-detector` (TensorFlow frozen graphs)
KNOWN = ("yolox_nano", "pedestrian_ssdlite")


def template(name_or_path: str) -> dict[str, Any]:
    """A known template by name, else the template (JSON) at that path."""
    if name_or_path in KNOWN:
        return known_template(name_or_path)
    raw: dict[str, Any] = json.loads(Path(name_or_path).read_text())
    return raw


def known_template(name: str) -> dict[str, Any]:
    if name not in KNOWN:
        raise SpecError(f"no known import {name!r}; known: {', '.join(KNOWN)}")
    text = resources.files("models.onnx_models").joinpath(f"known/{name}.json").read_text()
    raw: dict[str, Any] = json.loads(text)
    return raw
