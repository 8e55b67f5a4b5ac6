"""Importing a pretrained ONNX detector into weights/: the published file checked against its
pinned sha256, optionally made to take any frame size, checked to run as its spec says, then
written beside its spec, its licence text and a manifest entry. Rerunning it on the same source
writes the same bytes (`fashionstream import detector`, weights/README.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models import weights as W
from models.onnx_models.detector import OnnxSpecDetector
from models.onnx_models.sessions import session
from models.onnx_models.spec import ModelSpec, SpecError, parse_spec

ARCHITECTURE = "onnx_model_spec"


class ImportFailed(SpecError):
    """A source that is not the pinned file, or a model that does not run as its spec says."""


def dynamic_spatial_size(model_bytes: bytes) -> tuple[bytes, str]:
    """The same graph with its input's height and width (and its outputs' shapes) left
    dynamic: a graph whose reshapes keep the batch and channel axes and flatten the rest runs
    at any multiple of its largest stride (checked by the caller on a real run)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ImportFailed(f"input {model.graph.input[0].name}: expected 4 dims, got {len(dims)}")
    published = "x".join(str(d.dim_value or d.dim_param) for d in dims[2:])
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "height"
    dims[3].ClearField("dim_value")
    dims[3].dim_param = "width"
    for output in model.graph.output:
        for number, dim in enumerate(output.type.tensor_type.shape.dim):
            if number > 0 and dim.HasField("dim_value"):
                dim.ClearField("dim_value")
                dim.dim_param = f"{output.name}_{number}"
    del model.graph.value_info[:]  # inferred shapes of the fixed size, now wrong
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data, published


def import_detector(
    template: Mapping[str, Any],
    published: bytes,
    licence_text: str,
    weights_dir: Path,
    *,
    entry_name: str,
    dynamic: bool,
    command: str,
    report: Callable[[str], None] = lambda _: None,
) -> W.WeightsEntry:
    """Writes `<entry_name>-<spec name>.onnx`, its `.spec.json`, the licence text and the
    manifest entry `entry_name` into `weights_dir`; returns the entry."""
    source = template.get("source", {})
    pinned = str(source.get("sha256", ""))
    actual = hashlib.sha256(published).hexdigest()
    if not pinned:
        raise ImportFailed("source.sha256: the template pins no sha256 for the published file")
    if actual != pinned:
        raise ImportFailed(
            f"source.sha256: the file has {actual}, the spec pins {pinned}: not the file it names"
        )
    name = str(template.get("name", ""))
    data, notes = published, tuple(template.get("notes", ()))
    if dynamic:
        data, fixed = dynamic_spatial_size(published)
        notes += (
            f"import: the input's height and width made dynamic (the published graph takes "
            f"{fixed}); weights and operators unchanged",
        )
    file = f"{entry_name}-{name}.onnx"
    licence_file = f"licences/{name}.LICENSE"
    raw = {
        **template,
        "file": file,
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": {**source, "licence_file": licence_file},
        "notes": list(notes),
    }
    if not dynamic:  # the published graph's own size, padded to it
        raw["input"] = {
            **raw["input"],
            "resize": "letterbox",
            "size": fixed_size(published),
            "sizes": [],
        }
    spec = parse_spec(raw)
    weights_dir.mkdir(parents=True, exist_ok=True)
    (weights_dir / "licences").mkdir(exist_ok=True)
    (weights_dir / file).write_bytes(data)
    check_runs(weights_dir / file, spec)
    report(f"{file}: runs as its spec says")
    spec_file = f"{entry_name}-{name}.spec.json"
    spec.write(weights_dir / spec_file)
    (weights_dir / licence_file).write_text(licence_text)
    entry = W.WeightsEntry(
        name=entry_name,
        file=file,
        sha256=spec.sha256,
        architecture=ARCHITECTURE,
        version=f"{name}-{spec.sha256[:8]}",
        classes={"detector": list(spec.classes), "map": dict(spec.class_map)},
        preprocessing={"spec": spec_file, **spec.to_json()["input"]},
        metrics={},
        training={
            "imported": {
                "repository": spec.source.repository,
                "commit": spec.source.commit,
                "path": spec.source.path,
                "sha256": spec.source.sha256,
                "licence": spec.source.licence,
                "upstream": spec.source.upstream,
            },
            "command": command,
        },
        spec=spec_file,
    )
    old = (
        W.load_manifest(weights_dir).get(entry_name)
        if (weights_dir / W.MANIFEST).exists()
        else None
    )
    if old is not None and old.architecture == ARCHITECTURE:
        entry = replace(entry, metrics=old.metrics)  # measured figures stay until measured again
    W.write_entry(weights_dir, entry)
    return entry


def fixed_size(model_bytes: bytes) -> list[int]:
    """[height, width] of a graph whose input size is fixed."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[2:]):
        raise ImportFailed("--fixed-size: the published graph's input size is not fixed")
    return [int(dims[2].dim_value), int(dims[3].dim_value)]


def check_runs(path: Path, spec: ModelSpec) -> None:
    """One real run on a grey frame of the spec's size, and one of another size where the
    graph takes any: the graph is what the spec says, and decoding its output works."""
    detector = OnnxSpecDetector(session(path, 1), spec, threshold=0.5)
    h, w = spec.input.size
    shapes = [(h, w, 3)] + ([(h * 3 // 4, w, 3)] if spec.input.resize == "stride" else [])
    for shape in shapes:
        detector.detect_classes([np.full(shape, 127, np.uint8)])
