"""The model spec: what the pipeline needs to know to run an ONNX model it did not train (an
imported pretrained detector, a user's own detector or classifier plugged in by
FASHIONSTREAM_PLUGINS): input layout and normalisation, how to decode the outputs, the class
list and its map onto our taxonomy (a classifier: the attribute head it gives), thresholds, and
where the file came from under which licence. A documented JSON format (weights/README.md,
"Model specs"), checked field by field on load so a wrong spec fails at start-up naming the
field, never mid-stream.

Nothing here imports onnxruntime or torch: reading a spec is cheap and safe anywhere."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPEC_FORMAT = "fashionstream-model-spec/1"
KINDS = ("detector", "classifier")
# NHWC: classifiers only (Keras and TensorFlow exports)
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
# how a frame is fitted into the network's input:
#   letterbox: scaled to fit `size` (aspect kept), top-left aligned, the rest `pad_value`;
#   stride:    scaled to fit `size`, then padded only up to a multiple of `stride` (graphs whose
#              spatial dimensions are dynamic: a 640x480 frame runs as 640x480, not 640x640)
#   graph:     fed as it is, the graph resizes it (TensorFlow Object Detection API exports)
RESIZE_MODES = ("letterbox", "stride", "graph")
# the input's element type: float32 (normalised as the spec says) or uint8 (raw pixels)
DTYPES = ("float32", "uint8")
# how the outputs are read:
#   yolox: one (1, A, 5 + C) tensor of raw grid offsets, log sizes, objectness and class
#          probabilities over `strides` (YOLOX's export without decode_in_inference)
#   dets_labels: (1, N, 5) xyxy + score in input pixels and (1, N) class ids, NMS done inside
#          the graph (mmdeploy's detection exports)
#   tf_od_api: the TensorFlow Object Detection API's four outputs, (1, N, 4) boxes as
#          normalised (ymin, xmin, ymax, xmax), (1, N) scores, (1, N) class ids counted from 1,
#          (1,) detections; NMS done inside the graph
DECODERS = ("yolox", "dets_labels", "tf_od_api")
# a classifier's output `output.index`, one row per crop over `classes`:
#   softmax: logits, turned into probabilities; probabilities: as they are (a softmax layer)
CLASSIFIER_DECODERS = ("softmax", "probabilities")


# keras.applications' preprocess_input modes as the spec's normalisation: what the network
# expects its pixels to be (a model with its preprocessing inside takes "none": 0-255 RGB)
PREPROCESSING: Mapping[str, Mapping[str, Any]] = {
    "none": {"channels": "RGB", "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    # VGG16/19, ResNet50: BGR, ImageNet's mean pixel subtracted, not scaled
    "caffe": {
        "channels": "BGR",
        "scale": 1.0,
        "mean": [103.939, 116.779, 123.68],
        "std": [1.0, 1.0, 1.0],
    },
    # MobileNet, Inception, Xception: [-1, 1]
    "tf": {"channels": "RGB", "scale": 127.5, "mean": [1.0, 1.0, 1.0], "std": [1.0, 1.0, 1.0]},
    # DenseNet: [0, 1] then ImageNet's mean and std
    "torch": {
        "channels": "RGB",
        "scale": 255.0,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    },
}


class SpecError(ValueError):
    """A model spec that is malformed or does not match its model; the message names the field."""


@dataclass(frozen=True)
class Converted:
    """What an import that converts a model to ONNX wrote (`import keras`, `import
    tf-detector`): the spec, and the largest difference between the graph and the original model
    on the check inputs."""

    spec_path: Path
    max_difference: float


@dataclass(frozen=True)
class InputSpec:
    name: str  # the graph's input name
    size: tuple[int, int]  # (height, width) the frame is fitted into
    resize: str = "letterbox"
    stride: int = 32
    layout: str = "NCHW"
    channels: str = "RGB"
    pad_value: float = 114.0
    # pixel values are x / scale, then (x - mean) / std per channel (in `channels` order)
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # several squares each frame is fitted into, one run each, their boxes merged by one NMS
    # (resize "stride" only): a small input sees large people whole, a larger one small people.
    # Empty: `size` alone. FASHIONSTREAM_PERSON_INPUT_SIZES overrides it.
    sizes: tuple[int, ...] = ()
    dtype: str = "float32"


@dataclass(frozen=True)
class OutputSpec:
    decode: str
    strides: tuple[int, ...] = (8, 16, 32)  # yolox only
    # classifiers: the attribute head the output gives (one of ours, e.g. "gender", replaces
    # the shipped head; a new name adds one) and which of the graph's outputs it is
    head: str = ""
    index: int = 0


@dataclass(frozen=True)
class Thresholds:
    # scores under this are never boxes: dropped before NMS, for evaluation too (the tagger's
    # FASHIONSTREAM_PERSON_THRESHOLD decides what it keeps above it)
    floor: float = 0.001
    nms_iou: float = 0.45  # boxes of one class overlapping more than this are one


@dataclass(frozen=True)
class Source:
    """Where the file came from, pinned: enough to fetch and check it again."""

    repository: str = ""  # owner/name on GitHub, or a registry package
    commit: str = ""
    path: str = ""
    sha256: str = ""  # of the file as published, before any import step changed it
    licence: str = ""  # SPDX id: Apache-2.0, MIT, BSD-3-Clause, CC-BY-4.0, ...
    licence_path: str = ""  # the licence text's path in `repository`
    licence_file: str = ""  # the licence text shipped beside the weights (relative to weights/)
    attribution: str = ""
    upstream: str = ""  # what the file was exported from, when not its repository's own work


@dataclass(frozen=True)
class ModelSpec:
    """One ONNX model and everything needed to run it. `class_map` maps a class name of the
    model onto ours (e.g. "person" -> "person"); a detector drops the classes it does not
    name, a classifier keeps their own names (its labels are `labels()`)."""

    kind: str
    name: str
    file: str  # the ONNX file, relative to the spec's folder
    sha256: str  # of `file` as shipped
    input: InputSpec
    output: OutputSpec
    classes: tuple[str, ...]
    class_map: Mapping[str, str]
    thresholds: Thresholds = field(default_factory=Thresholds)
    source: Source = field(default_factory=Source)
    notes: tuple[str, ...] = ()  # what an import step changed, measured caveats

    def __post_init__(self) -> None:
        _check(self)

    def labels(self) -> tuple[str, ...]:
        """A classifier's labels in output order, mapped onto ours where `class_map` says."""
        return tuple(self.class_map.get(c, c) for c in self.classes)

    def mapped(self) -> dict[int, str]:
        """Model class index -> our class name, for the classes `class_map` keeps."""
        return {i: self.class_map[c] for i, c in enumerate(self.classes) if c in self.class_map}

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["class_map"] = dict(self.class_map)
        return {"format": SPEC_FORMAT, **raw}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def _check(spec: ModelSpec) -> None:
    def need(ok: bool, where: str, message: str) -> None:
        if not ok:
            raise SpecError(f"model spec {spec.name or '?'}: {where}: {message}")

    need(spec.kind in KINDS, "kind", f"{spec.kind!r} is not one of {KINDS}")
    need(bool(spec.name), "name", "empty")
    need(spec.file.endswith(".onnx"), "file", f"{spec.file!r} is not an .onnx file")
    need(len(spec.sha256) == 64, "sha256", "expected 64 hex digits")
    i = spec.input
    need(len(i.size) == 2 and min(i.size) >= 32, "input.size", f"(height, width) >= 32: {i.size}")
    need(i.resize in RESIZE_MODES, "input.resize", f"{i.resize!r} is not one of {RESIZE_MODES}")
    need(i.stride > 0, "input.stride", f"must be positive, got {i.stride}")
    need(
        all(n >= 32 and n % i.stride == 0 for n in i.sizes),
        "input.sizes",
        f"multiples of input.stride from 32, got {i.sizes}",
    )
    need(not i.sizes or i.resize == "stride", "input.sizes", "needs input.resize stride")
    need(i.layout in LAYOUTS, "input.layout", f"{i.layout!r} is not one of {LAYOUTS}")
    need(len(spec.classes) > 0, "classes", "empty")
    unknown = sorted(set(spec.class_map) - set(spec.classes))
    need(not unknown, "class_map", f"maps classes the model does not have: {unknown}")
    need(i.channels in CHANNEL_ORDERS, "input.channels", f"{i.channels!r} not in {CHANNEL_ORDERS}")
    need(i.scale > 0, "input.scale", f"must be positive, got {i.scale}")
    need(len(i.mean) == 3 and len(i.std) == 3, "input.mean/std", "3 values each")
    need(min(i.std) > 0, "input.std", f"must be positive, got {i.std}")
    need(i.dtype in DTYPES, "input.dtype", f"{i.dtype!r} is not one of {DTYPES}")
    raw = i.scale == 1.0 and tuple(i.mean) == (0.0, 0.0, 0.0) and tuple(i.std) == (1.0,) * 3
    need(i.dtype == "float32" or raw, "input.dtype", "uint8 pixels take no scale, mean or std")
    if spec.kind == "classifier":
        need(i.dtype == "float32", "input.dtype", "a classifier takes float32")
        _check_classifier(spec, need)
        return
    need(
        i.layout == "NCHW" or spec.output.decode == "tf_od_api",
        "input.layout",
        "NHWC: TensorFlow Object Detection API exports only (output.decode tf_od_api)",
    )
    decode = spec.output.decode
    need(decode in DECODERS, "output.decode", f"{decode!r} is not one of {DECODERS}")
    if spec.output.decode == "yolox":
        need(bool(spec.output.strides), "output.strides", "yolox needs its strides")
    need(not spec.output.head, "output.head", "a detector gives boxes, not an attribute head")
    need(bool(spec.class_map), "class_map", "maps no class: the model would find nothing")
    t = spec.thresholds
    need(0.0 <= t.floor < 1.0, "thresholds.floor", f"must be in [0, 1), got {t.floor}")
    need(0.0 < t.nms_iou <= 1.0, "thresholds.nms_iou", f"must be in (0, 1], got {t.nms_iou}")


def _check_classifier(spec: ModelSpec, need: Any) -> None:
    """A classifier sees the shipped crop rule's square garment crop (models.attributes.crop)
    at its own input size, and gives one attribute head."""
    i, o = spec.input, spec.output
    need(i.size[0] == i.size[1], "input.size", f"a classifier takes square crops, got {i.size}")
    need(i.resize == "letterbox", "input.resize", "a classifier's crop is already square")
    need(
        o.decode in CLASSIFIER_DECODERS,
        "output.decode",
        f"{o.decode!r} is not one of {CLASSIFIER_DECODERS}",
    )
    need(bool(o.head), "output.head", "name the attribute head the classifier gives")
    need(o.index >= 0, "output.index", f"must be >= 0, got {o.index}")
    labels = spec.labels()
    need(len(set(labels)) == len(labels), "class_map", f"maps two classes onto one: {labels}")


def _section(raw: Mapping[str, Any], key: str, cls: type, name: str) -> Any:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise SpecError(f"model spec {name}: {key}: expected an object")
    known = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(value) - known)
    if extra:
        raise SpecError(f"model spec {name}: {key}: unknown fields {extra}; known: {sorted(known)}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise SpecError(f"model spec {name}: {key}: {exc}") from None


def parse_spec(raw: Mapping[str, Any]) -> ModelSpec:
    """A spec from its JSON object; every error names the field."""
    name = str(raw.get("name", "?"))
    if raw.get("format") != SPEC_FORMAT:
        got = raw.get("format")
        raise SpecError(f"model spec {name}: format: expected {SPEC_FORMAT!r}, got {got!r}")
    top = set(ModelSpec.__dataclass_fields__) | {"format"}
    extra = sorted(set(raw) - top)
    if extra:
        raise SpecError(f"model spec {name}: unknown fields {extra}")
    for key in ("kind", "file", "sha256", "input", "output", "classes", "class_map"):
        if key not in raw:
            raise SpecError(f"model spec {name}: {key}: missing")
    class_map = raw["class_map"]
    if not isinstance(class_map, Mapping):
        raise SpecError(f"model spec {name}: class_map: expected an object")
    return ModelSpec(
        kind=str(raw["kind"]),
        name=name,
        file=str(raw["file"]),
        sha256=str(raw["sha256"]),
        input=_section(raw, "input", InputSpec, name),
        output=_section(raw, "output", OutputSpec, name),
        classes=tuple(str(c) for c in raw["classes"]),
        class_map={str(k): str(v) for k, v in class_map.items()},
        thresholds=_section(raw, "thresholds", Thresholds, name),
        source=_section(raw, "source", Source, name),
        notes=tuple(str(n) for n in raw.get("notes", ())),
    )


def load_spec(path: Path) -> ModelSpec:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"no model spec at {path}") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a JSON object")
    return parse_spec(raw)
