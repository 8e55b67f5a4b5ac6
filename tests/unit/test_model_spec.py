"""The model spec format and the ONNX spec detector's numpy parts: a wrong spec fails naming its
field; frames are fitted as the spec says; YOLOX's grid decode and NMS give the boxes a
hand-built output holds; a graph that does not match its spec stops at start-up."""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.onnx_models.detector import (
    OnnxSpecDetector,
    check_session,
    decode_yolox,
    fit_frame,
    nms,
)
from models.onnx_models.known_specs import KNOWN, known_template
from models.onnx_models.spec import SPEC_FORMAT, InputSpec, SpecError, parse_spec


def _raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "format": SPEC_FORMAT,
        "kind": "detector",
        "name": "tiny",
        "file": "tiny.onnx",
        "sha256": "0" * 64,
        "input": {"name": "images", "size": [64, 64], "resize": "stride"},
        "output": {"decode": "yolox", "strides": [8, 16, 32]},
        "classes": ["person", "car"],
        "class_map": {"person": "person"},
    }
    raw.update(changes)
    return raw


def test_a_minimal_spec_parses_with_the_documented_defaults() -> None:
    spec = parse_spec(_raw())
    assert spec.input.channels == "RGB"
    assert spec.input.pad_value == 114.0
    assert spec.thresholds.nms_iou == 0.45
    assert spec.mapped() == {0: "person"}
    assert parse_spec(spec.to_json()) == spec  # what is written reads back the same


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda raw: raw.pop(key)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(format="v0"), "format"),
        (_drop("classes"), "classes: missing"),
        (lambda r: r.update(kind="segmenter"), "kind"),
        (lambda r: r.update(file="tiny.pt"), "file"),
        (lambda r: r.update(sha256="abc"), "sha256"),
        (lambda r: r["input"].update(size=[16, 64]), "input.size"),
        (lambda r: r["input"].update(resize="stretch"), "input.resize"),
        (lambda r: r["input"].update(channels="RGBA"), "input.channels"),
        (lambda r: r["input"].update(std=[1.0, 0.0, 1.0]), "input.std"),
        (lambda r: r["input"].update(colour="yes"), "input: unknown fields ['colour']"),
        (lambda r: r["input"].update(sizes=[100]), "input.sizes: multiples"),
        (lambda r: r["input"].update(resize="letterbox", sizes=[64]), "input.sizes: needs"),
        (lambda r: r["output"].update(decode="ssd"), "output.decode"),
        (lambda r: r.update(class_map={"dog": "person"}), "class_map: maps classes"),
        (lambda r: r.update(class_map={}), "class_map: maps no class"),
        (lambda r: r.update(thresholds={"floor": 1.5}), "thresholds.floor"),
        (lambda r: r.update(thresholds={"nms_iou": 0.0}), "thresholds.nms_iou"),
        (lambda r: r.update(extra=1), "unknown fields ['extra']"),
    ],
)
def test_a_wrong_spec_fails_naming_its_field(
    change: Callable[[dict[str, Any]], None], field: str
) -> None:
    raw = copy.deepcopy(_raw())
    change(raw)
    with pytest.raises(SpecError, match="model spec tiny: .*" + field.replace("[", r"\[")):
        parse_spec(raw)


@pytest.mark.parametrize("name", KNOWN)
def test_the_known_templates_become_valid_specs(name: str) -> None:
    spec = parse_spec({**known_template(name), "file": f"{name}.onnx", "sha256": "1" * 64})
    assert "person" in spec.mapped().values()
    assert spec.source.licence in ("Apache-2.0", "MIT", "BSD-3-Clause", "CC-BY-4.0")
    # pinned: a repository at a commit, or a registry package at a version
    pypi = spec.source.repository.startswith("pypi:") and "==" in spec.source.repository
    assert len(spec.source.commit) == 40 or pypi
    assert len(spec.source.sha256) == 64


def test_letterbox_fills_the_square_and_stride_pads_only_to_the_stride() -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[..., 0] = 200  # red in RGB
    square = InputSpec(name="x", size=(128, 128), resize="letterbox", channels="BGR")
    array, ratio = fit_frame(frame, square)
    assert array.shape == (1, 3, 128, 128)
    assert ratio == 2.0
    assert array[0, 2, 0, 0] == 200
    assert array[0, 0, 0, 0] == 0
    assert array[0, 0, 100, 0] == 114  # below the frame: the pad
    strided = InputSpec(name="x", size=(128, 128), resize="stride", stride=32)
    array, _ = fit_frame(frame, strided)
    assert array.shape == (1, 3, 96, 128)
    normalised = InputSpec(name="x", size=(48, 64), resize="stride", scale=255.0, mean=(0.5,) * 3)
    array, ratio = fit_frame(frame, normalised)
    assert ratio == 1.0
    assert array.shape == (1, 3, 64, 64)
    assert array[0, 0, 0, 0] == pytest.approx(200 / 255 - 0.5)


def _yolox_output(input_hw: tuple[int, int], anchors: dict[int, list[float]]) -> np.ndarray:
    total = sum((input_hw[0] // s) * (input_hw[1] // s) for s in (8, 16, 32))
    out = np.zeros((1, total, 7), np.float32)  # 2 classes
    for index, values in anchors.items():
        out[0, index] = values
    return out


def test_yolox_decode_places_a_box_on_its_grid_cell() -> None:
    # stride 8 over 64x64: 8x8 cells; anchor 9 is row 1, column 1
    output = _yolox_output((64, 64), {9: [0.5, 0.5, np.log(2.0), np.log(4.0), 0.9, 0.8, 0.1]})
    boxes, scores = decode_yolox(output, (64, 64), (8, 16, 32))
    np.testing.assert_allclose(boxes[9], [12 - 8, 12 - 16, 12 + 8, 12 + 16])
    np.testing.assert_allclose(scores[9], [0.72, 0.09], rtol=1e-6)
    with pytest.raises(SpecError, match="anchor points"):
        decode_yolox(output, (96, 64), (8, 16, 32))


def test_nms_keeps_the_best_of_overlapping_boxes_and_the_separate_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    assert nms(boxes, scores, 0.45).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]


class _Arg:
    def __init__(self, name: str, shape: list[Any], type: str = "tensor(float)") -> None:
        self.name, self.shape, self.type = name, shape, type


class _Session:
    """Stands in for an InferenceSession: fixed outputs, the graph's declared signature."""

    def __init__(self, output: np.ndarray, in_shape: list[Any], out_shape: list[Any]) -> None:
        self.output = output
        self.in_shape, self.out_shape = in_shape, out_shape
        self.fed: list[tuple[int, ...]] = []

    def get_inputs(self) -> list[_Arg]:
        return [_Arg("images", self.in_shape)]

    def get_outputs(self) -> list[_Arg]:
        return [_Arg("output", self.out_shape)]

    def run(self, _names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.fed.append(feed["images"].shape)
        return [self.output]


def test_the_detector_keeps_mapped_classes_in_frame_pixels() -> None:
    spec = parse_spec(_raw())
    person = [0.5, 0.5, np.log(2.0), np.log(4.0), 0.9, 0.8, 0.1]
    duplicate = [0.4, 0.5, np.log(2.0), np.log(4.0), 0.9, 0.7, 0.0]
    car = [0.5, 0.5, 0.0, 0.0, 0.9, 0.0, 0.9]
    output = _yolox_output((64, 64), {9: person, 10: car, 17: [0, 0, 0, 0, 0.2, 0.5, 0]})
    output[0, 1] = duplicate
    output[0, 9] = person
    session = _Session(output, [1, 3, "height", "width"], [1, "anchors", 7])
    detector = OnnxSpecDetector(session, spec, threshold=0.3)
    # a 128x128 frame is halved into the 64x64 input: boxes come back doubled
    (found,) = detector.detect_classes([np.zeros((128, 128, 3), np.uint8)])
    assert session.fed == [(1, 3, 64, 64)]
    assert found.classes == ("person",)  # the car is not mapped; 0.1 is under the threshold
    np.testing.assert_allclose(found.boxes[0], [8, 0, 40, 56])
    (people,) = detector.detect([np.zeros((128, 128, 3), np.uint8)])
    assert len(people) == 1
    assert people.scores[0] == pytest.approx(0.72)


@pytest.mark.parametrize(
    ("in_shape", "out_shape", "field"),
    [
        ([1, 3, 416, 416], [1, 3549, 7], "input.size"),
        ([1, 1, "h", "w"], [1, "a", 7], "input.layout"),
        ([1, 3, "h", "w"], [1, "a", 85], "classes: 2 classes need 7"),
    ],
)
def test_a_graph_that_does_not_match_its_spec_stops_at_start_up(
    in_shape: list[Any], out_shape: list[Any], field: str
) -> None:
    session = _Session(np.zeros((1, 1, 7), np.float32), in_shape, out_shape)
    with pytest.raises(SpecError, match=field):
        check_session(session, parse_spec(_raw()))


class _SizedSession(_Session):
    """Answers any input size with an output of the right anchor count: one person box in
    the first cell, the same place in frame pixels at every size."""

    def run(self, _names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        shape = feed["images"].shape
        self.fed.append(shape)
        out = _yolox_output(shape[2:], {0: [0.5, 0.5, np.log(2.0), np.log(4.0), 0.9, 0.9, 0.0]})
        return [out]


def test_several_input_sizes_run_once_each_and_their_boxes_merge() -> None:
    spec = parse_spec(
        _raw(input={"name": "images", "size": [64, 64], "resize": "stride", "sizes": [64, 128]})
    )
    session = _SizedSession(np.zeros(0), [1, 3, "h", "w"], [1, "a", 7])
    detector = OnnxSpecDetector(session, spec, threshold=0.3)
    assert detector.input_sizes == (64, 128)
    (found,) = detector.detect([np.zeros((64, 64, 3), np.uint8)])
    assert session.fed == [(1, 3, 64, 64), (1, 3, 128, 128)]
    # the two runs' boxes differ (a cell is 8 px at both sizes) and do not overlap enough to
    # be one: both kept
    assert len(found) == 2
    override = OnnxSpecDetector(session, spec, threshold=0.3, input_sizes=(96,))
    assert override.input_sizes == (96,)


def test_a_spec_whose_file_is_missing_or_another_file_stops_before_a_session(
    tmp_path: Path,
) -> None:
    spec = parse_spec(_raw())
    spec.write(tmp_path / "tiny.spec.json")
    with pytest.raises(SpecError, match="is missing"):
        OnnxSpecDetector.from_spec_file(tmp_path / "tiny.spec.json", threads=1, threshold=0.3)
    (tmp_path / "tiny.onnx").write_bytes(b"not the file the spec pins")
    with pytest.raises(SpecError, match="has sha256"):
        OnnxSpecDetector.from_spec_file(tmp_path / "tiny.spec.json", threads=1, threshold=0.3)
