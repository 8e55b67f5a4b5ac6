"""Running an ONNX detector described by a model spec: the frame fitted into the network's input
as the spec says, the outputs decoded by the spec's decoder, boxes back in frame pixels, NMS per
class, and only the classes the spec maps onto ours kept. numpy and OpenCV around ONNX Runtime:
no torch.

Tensor contract (the `yolox` decoder, YOLOX's export without decode_in_inference):
  input  (1, 3, H, W) float32 in the spec's channel order, (x / scale - mean) / std;
  output (1, A, 5 + C): per anchor point of every stride s (A = sum of H/s * W/s, row-major per
         stride, strides in order) raw (dx, dy, log w, log h), objectness and C class
         probabilities; centre = (grid + d) * s, size = exp(log size) * s, score = obj * class.
The `dets_labels` decoder (mmdeploy): (1, N, 5) xyxy + score in input pixels, (1, N) class ids.
The `tf_od_api` decoder (TensorFlow Object Detection API exports, converted by `fashionstream
import tf-detector`): the frame fed as it is, (1, H, W, 3) uint8 (the graph resizes it); out
(1, N, 4) normalised (ymin, xmin, ymax, xmax), (1, N) scores, (1, N) class ids from 1, (1,) count.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.onnx_models.sessions import session
from models.onnx_models.spec import InputSpec, ModelSpec, SpecError, load_spec
from models.people.boxes import PersonBoxes
from models.taxonomy import PERSON
from models.weights import file_problem

# the spec's input.dtype as ONNX Runtime names a graph input's type
ORT_TYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}


@dataclass(frozen=True)
class ClassBoxes:
    """What the detector found in one frame: boxes (n, 4) float32 xyxy frame pixels, scores
    (n,) float32 sorted descending, and each box's class, a name of ours (the spec's map)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or len(self.classes) != n:
            raise ValueError(
                f"ClassBoxes: expected boxes ({n}, 4) and {n} classes, got "
                f"{self.boxes.shape} and {len(self.classes)}"
            )


def fit_frame(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, float]:
    """RGB uint8 (H, W, 3) -> the network's input, (1, 3, h, w) float32 (or as the spec's
    layout and dtype say), and the scale applied (input pixels per frame pixel). The frame
    keeps its aspect, top-left aligned."""
    if spec.resize == "graph":  # the graph resizes it: the frame as it is
        pixels = image if spec.channels == "RGB" else image[:, :, ::-1]
        batch = np.ascontiguousarray(pixels[None])
        return (batch if spec.layout == "NHWC" else batch.transpose(0, 3, 1, 2)), 1.0
    height, width = image.shape[:2]
    ratio = min(spec.size[0] / height, spec.size[1] / width)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    if (new_w, new_h) != (width, height):
        # INTER_AREA when shrinking keeps small people's edges; linear when enlarging
        interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if spec.resize == "letterbox":
        out_h, out_w = spec.size
    else:  # stride: pad only to the next multiple of the stride
        out_h = new_h + (-new_h) % spec.stride
        out_w = new_w + (-new_w) % spec.stride
    pixels = image if spec.channels == "RGB" else image[:, :, ::-1]
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    # channel by channel, in place: a frame's worth of float32 temporaries and a transpose
    # cost as much as the arithmetic (15 -> 5 ms for 640x480); the pad is in raw pixel units
    # like the image, so it is normalised with it
    canvas = np.empty((3, out_h, out_w), np.float32)
    for c, plane in enumerate(canvas):
        plane[:new_h, :new_w] = pixels[:, :, c]
        plane[new_h:, :] = spec.pad_value
        plane[:new_h, new_w:] = spec.pad_value
        plane /= spec.scale
        plane -= mean[c]
        plane /= std[c]
    if spec.dtype == "uint8":
        canvas = canvas.round().clip(0, 255).astype(np.uint8)
    if spec.layout == "NHWC":
        return np.ascontiguousarray(canvas.transpose(1, 2, 0)[None]), ratio
    return canvas[None], ratio


def decode_yolox(
    output: np.ndarray, input_hw: tuple[int, int], strides: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(1, A, 5 + C) raw YOLOX output -> boxes (A, 4) xyxy input pixels, scores (A, C)."""
    grids, steps = [], []
    for stride in strides:
        h, w = input_hw[0] // stride, input_hw[1] // stride
        xs, ys = np.meshgrid(np.arange(w), np.arange(h))
        grids.append(np.stack((xs, ys), -1).reshape(-1, 2))
        steps.append(np.full((h * w, 1), stride))
    grid = np.concatenate(grids).astype(np.float32)
    step = np.concatenate(steps).astype(np.float32)
    raw = output[0]
    if raw.shape[0] != len(grid):
        raise SpecError(
            f"yolox output has {raw.shape[0]} anchor points; strides {tuple(strides)} over a "
            f"{input_hw[0]}x{input_hw[1]} input give {len(grid)}: wrong output.strides?"
        )
    centre = (raw[:, :2] + grid) * step
    size = np.exp(np.minimum(raw[:, 2:4], 20.0)) * step  # the clip keeps garbage finite
    boxes = np.concatenate((centre - size / 2, centre + size / 2), axis=1)
    return boxes, raw[:, 4:5] * raw[:, 5:]


def decode_tf_od_api(
    outputs: Sequence[np.ndarray], input_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The TF Object Detection API's outputs -> boxes (n, 4) xyxy input pixels, scores (n,),
    class indices (n,) into the spec's classes (the API counts from 1)."""
    count = int(np.asarray(outputs[3]).reshape(-1)[0])
    height, width = input_shape[1:3]  # NHWC: the frame as fed
    ymin, xmin, ymax, xmax = np.asarray(outputs[0][0][:count], np.float32).T
    boxes = np.stack((xmin * width, ymin * height, xmax * width, ymax * height), axis=1)
    scores = np.asarray(outputs[1][0][:count], np.float32)
    labels = np.asarray(outputs[2][0][:count]).astype(np.int64) - 1
    return boxes.reshape(-1, 4), scores, labels


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, np.int64)


class OnnxSpecDetector:
    """An ONNX detector run as its spec says, one frame per run; one caller at a time.
    `threshold`: the lowest score kept (0 for evaluation's precision-recall curves).
    `input_sizes`: squares each frame is fitted into, one run each, all boxes through one NMS
    (a small input sees large people whole, a large one small people); empty: the spec's
    `input.sizes`, or its `input.size` alone."""

    def __init__(
        self,
        ort_session: Any,
        spec: ModelSpec,
        threshold: float,
        *,
        input_sizes: Sequence[int] = (),
    ) -> None:
        input_sizes = tuple(input_sizes) or spec.input.sizes
        if input_sizes and spec.input.resize != "stride":
            raise SpecError(
                f"model spec {spec.name}: input.resize: a graph of fixed size "
                f"{spec.input.size} cannot take input sizes {tuple(input_sizes)}"
            )
        self.session = ort_session
        self.spec = spec
        self.threshold = threshold
        self.inputs = [replace(spec.input, size=(n, n)) for n in input_sizes] or [spec.input]
        self._ours = spec.mapped()
        self._lock = threading.Lock()
        check_session(ort_session, spec)

    @classmethod
    def from_spec_file(
        cls,
        path: Path,
        *,
        threads: int,
        threshold: float,
        input_sizes: Sequence[int] = (),
        cuda: bool = False,
    ) -> OnnxSpecDetector:
        """The spec at `path` and its ONNX file beside it (sha256 checked)."""
        spec = load_spec(path)
        model = path.parent / spec.file
        problem = file_problem(model, spec.sha256)
        if problem is not None:
            raise SpecError(f"model spec {spec.name}: file, sha256: {problem} (the spec's)")
        return cls(session(model, threads, cuda=cuda), spec, threshold, input_sizes=input_sizes)

    @property
    def input_sizes(self) -> tuple[int, ...]:
        """The long side of each run's input square, in run order."""
        return tuple(max(fit.size) for fit in self.inputs)

    def detect_classes(self, images: Sequence[np.ndarray]) -> list[ClassBoxes]:
        return [self._one(image) for image in images]

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonBoxes]:
        """The people among the detections (the tagger's person detector)."""
        out = []
        for found in self.detect_classes(images):
            keep = np.asarray([c == PERSON for c in found.classes], bool).reshape(-1)
            out.append(PersonBoxes(boxes=found.boxes[keep], scores=found.scores[keep]))
        return out

    def _run(self, image: np.ndarray, fit: InputSpec) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """One run at one input size: per mapped class, boxes (n, 4) in frame pixels and their
        scores (n,) above the floor, before NMS."""
        array, ratio = fit_frame(image, fit)
        with self._lock:
            outputs = self.session.run(None, {fit.name: array})
        if self.spec.output.decode == "yolox":
            boxes, scores = decode_yolox(outputs[0], array.shape[2:], self.spec.output.strides)
            per_class = {i: (boxes, scores[:, i]) for i in self._ours if i < scores.shape[1]}
        elif self.spec.output.decode == "tf_od_api":
            boxes, scores, labels = decode_tf_od_api(outputs, array.shape)
            per_class = {i: (boxes[labels == i], scores[labels == i]) for i in self._ours}
        else:  # dets_labels
            dets, labels = outputs[0][0], outputs[1][0].astype(np.int64)
            per_class = {i: (dets[labels == i, :4], dets[labels == i, 4]) for i in self._ours}
        floor = max(self.threshold, self.spec.thresholds.floor)
        return {
            i: (boxes[scores >= floor] / ratio, scores[scores >= floor])
            for i, (boxes, scores) in per_class.items()
        }

    def _one(self, image: np.ndarray) -> ClassBoxes:
        runs = [self._run(image, fit) for fit in self.inputs]
        kept_boxes, kept_scores, kept_classes = [], [], []
        for index, ours in self._ours.items():
            boxes = np.concatenate([run[index][0] for run in runs if index in run]).reshape(-1, 4)
            scores = np.concatenate([run[index][1] for run in runs if index in run]).reshape(-1)
            keep = nms(boxes, scores, self.spec.thresholds.nms_iou)
            kept_boxes.append(boxes[keep])
            kept_scores.append(scores[keep])
            kept_classes.extend([ours] * len(keep))
        boxes = np.concatenate(kept_boxes) if kept_boxes else np.zeros((0, 4), np.float32)
        scores = np.concatenate(kept_scores) if kept_scores else np.zeros(0, np.float32)
        order = np.argsort(-scores, kind="stable")
        height, width = image.shape[:2]
        boxes = boxes[order].astype(np.float32).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return ClassBoxes(
            boxes=boxes,
            scores=scores[order].astype(np.float32),
            classes=tuple(kept_classes[i] for i in order),
        )


def check_session(ort_session: Any, spec: ModelSpec) -> None:
    """The graph is the one the spec describes: input name and rank, channel count, fixed
    spatial size where the graph fixes it, output count and class count. Raises SpecError
    naming the field, so a mismatched spec stops the worker at start-up."""
    inputs = ort_session.get_inputs()
    names = [i.name for i in inputs]
    if spec.input.name not in names:
        raise SpecError(f"model spec {spec.name}: input.name: {spec.input.name!r} not in {names}")
    graph_input = next(i for i in inputs if i.name == spec.input.name)
    shape = graph_input.shape
    channels_at = 1 if spec.input.layout == "NCHW" else 3
    if len(shape) != 4 or shape[channels_at] not in (3, "3"):
        raise SpecError(
            f"model spec {spec.name}: input.layout: {spec.input.layout} with 3 channels, got "
            f"{shape}"
        )
    if graph_input.type != ORT_TYPES[spec.input.dtype]:
        raise SpecError(
            f"model spec {spec.name}: input.dtype: the graph takes {graph_input.type}, the spec "
            f"says {spec.input.dtype}"
        )
    spatial = shape[2:] if spec.input.layout == "NCHW" else shape[1:3]
    fixed = [d for d in spatial if isinstance(d, int)]
    if fixed and (len(fixed) != 2 or tuple(fixed) != tuple(spec.input.size)):
        raise SpecError(
            f"model spec {spec.name}: input.size: the graph takes {spatial}, the spec says "
            f"{list(spec.input.size)}"
        )
    if fixed and spec.input.resize != "letterbox":
        raise SpecError(
            f"model spec {spec.name}: input.resize: the graph's size is fixed, so only "
            "letterbox fits it"
        )
    outputs = ort_session.get_outputs()
    wanted = {"yolox": 1, "dets_labels": 2, "tf_od_api": 4}[spec.output.decode]
    if len(outputs) != wanted:
        raise SpecError(
            f"model spec {spec.name}: output.decode: {spec.output.decode} reads {wanted} "
            f"output(s), the graph has {len(outputs)}"
        )
    if spec.output.decode == "yolox":
        last = outputs[0].shape[-1]
        if isinstance(last, int) and last != 5 + len(spec.classes):
            raise SpecError(
                f"model spec {spec.name}: classes: {len(spec.classes)} classes need "
                f"{5 + len(spec.classes)} values per anchor, the graph gives {last}"
            )
