"""The weights manifest (weights/manifest.json): which file each shipped model loads, its sha256,
classes, preprocessing, measured metrics and how it was trained. Weights are data, not code."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# the entries the tagger runs
DETECTOR_ENTRY = "detector"
PERSON_CROPS_ENTRY = "person_crops"  # the garment detector fine-tuned on camera person crops
ATTRIBUTES_ENTRY = "attributes"
EMBEDDING_ENTRY = "embedding"  # an extra output of the attribute network
PEOPLE_ENTRY = "people"


class WeightsError(Exception):
    """A manifest or weights file that is missing, malformed or not the file it claims to be."""


@dataclass(frozen=True)
class Normalisation:
    """RGB in [0, 1] -> (x - mean) / std, per channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


Manifest = Mapping[str, "WeightsEntry"]


@dataclass(frozen=True)
class WeightsEntry:
    """One shipped model. `architecture` is the registry name its builder is found under."""

    name: str
    file: str
    sha256: str
    architecture: str
    version: str
    classes: Mapping[str, Any]  # e.g. {"detector": [...]} or {"gender": [...], ...}
    preprocessing: Mapping[str, Any]
    metrics: Mapping[str, Any]
    training: Mapping[str, Any]  # data, command, duration_s, machine, epochs, ...
    # an imported ONNX model's model spec (models/onnx_models/spec.py), relative to weights/;
    # empty for the networks trained here, which their architecture's builder describes
    spec: str = ""
    # the inference graph shipped beside a network trained here (models.runtime.export): its
    # ONNX file, sha256, and the sha256 of each manifest entry it was exported from; empty for
    # an entry that ships none (the runtime then needs the training stack to run it)
    graph: Mapping[str, Any] = field(default_factory=dict)

    def path(self, weights_dir: Path) -> Path:
        return weights_dir / self.file

    @property
    def normalisation(self) -> Normalisation:
        """The input's per-channel mean and std, checked (the raw `preprocessing` stays for
        what the manifest says beyond them)."""
        try:
            mean = tuple(float(v) for v in self.preprocessing["mean"])
            std = tuple(float(v) for v in self.preprocessing["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(
                f"{self.name}: preprocessing has no usable mean/std: {exc}"
            ) from None
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise WeightsError(f"{self.name}: mean/std must be 3 values, std > 0: {mean} {std}")
        return Normalisation((mean[0], mean[1], mean[2]), (std[0], std[1], std[2]))

    def verified_path(self, weights_dir: Path) -> Path:
        """The file's path, after checking it exists and its sha256 matches the manifest."""
        path = self.path(weights_dir)
        problem = file_problem(path, self.sha256)
        if problem is not None:
            raise WeightsError(f"{self.name}: {problem} (the manifest's)")
        return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_problem(path: Path, sha256: str) -> str | None:
    """What keeps `path` from being the file whose sha256 is `sha256` (missing, or another
    file), or None when it is that file: the one check of a shipped file, whoever names it."""
    if not path.is_file():
        return f"weights file {path} is missing"
    actual = sha256_of(path)
    if actual != sha256:
        return f"{path} has sha256 {actual}, not {sha256}"
    return None


def load_manifest(weights_dir: Path) -> dict[str, WeightsEntry]:
    path = weights_dir / MANIFEST
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"no weights manifest at {path}") from None
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path} is not valid JSON: {exc}") from None
    models = raw.get("models")
    if not isinstance(models, dict):
        raise WeightsError(f"{path} has no 'models' object")
    try:
        return {name: WeightsEntry(name=name, **fields) for name, fields in models.items()}
    except TypeError as exc:
        raise WeightsError(f"{path}: malformed entry: {exc}") from None


def entry(weights_dir: Path, name: str, manifest: Manifest | None = None) -> WeightsEntry:
    """One model's entry, from `manifest` when the caller has read it already."""
    entries = load_manifest(weights_dir) if manifest is None else manifest
    if name not in entries:
        raise WeightsError(f"{weights_dir / MANIFEST} has no model {name!r} ({sorted(entries)})")
    return entries[name]


def write_entry(weights_dir: Path, new: WeightsEntry) -> None:
    """Add or replace one model's entry; the file is replaced atomically."""
    path = weights_dir / MANIFEST
    raw: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"models": {}}
    fields = {
        k: v for k, v in new.__dict__.items() if k != "name" and (k not in ("spec", "graph") or v)
    }
    raw.setdefault("models", {})[new.name] = fields
    raw["models"] = dict(sorted(raw["models"].items()))
    fd, tmp = tempfile.mkstemp(dir=weights_dir, prefix=".manifest-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(raw, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
