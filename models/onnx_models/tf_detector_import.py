"""`fashionstream import tf-detector`: a TensorFlow Object Detection API detector (a frozen graph:
`image_tensor` in; boxes, scores, classes and a count out) converted to an ONNX graph and its
model spec, for FASHIONSTREAM_PLUGINS (a person detector replaces ours). The source is pinned by
a template's sha256, as `import detector` pins its sources; the conversion needs the `keras`
extra (TensorFlow, tf2onnx) and is checked against TensorFlow on real frames before anything is
written. The converted graph runs in ONNX Runtime alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.onnx_models.sessions import session
from models.onnx_models.spec import Converted, SpecError, parse_spec

OPSET = 17
# the TF Object Detection API's output tensors, in the order the tf_od_api decoder reads them
OUTPUTS = ("detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0")
# TensorFlow and ONNX Runtime compute the same graph: box corners (normalised) and scores of the
# detections they both rank first may differ by this much
TOLERANCE = 1e-3
COMPARED = 20  # the top detections of each frame compared


class TfImportFailed(SpecError):
    """A graph that is not the pinned one, not a TF Object Detection API detector, or not
    computed the same after conversion."""


def import_tf_detector(
    template: Mapping[str, Any],
    graph_bytes: bytes,
    licence_text: str,
    out_dir: Path,
    *,
    check_frames: Sequence[np.ndarray],
) -> Converted:
    """Convert the frozen graph `graph_bytes` (its sha256 must be the template's source.sha256)
    and write `<name>.onnx`, `<name>.spec.json` and `<name>.LICENSE` into `out_dir`."""
    import tensorflow as tf
    import tf2onnx

    name = str(template.get("name", "?"))
    pinned = str(template.get("source", {}).get("sha256", ""))
    actual = hashlib.sha256(graph_bytes).hexdigest()
    if pinned and actual != pinned:
        raise TfImportFailed(
            f"model spec {name}: source.sha256: the graph is {actual}, not {pinned}"
        )
    if not licence_text.strip():
        raise TfImportFailed(f"model spec {name}: no licence text (the model ships with its own)")
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_bytes)
    input_name = str(template["input"]["name"])
    nodes = {node.name for node in graph_def.node}
    missing = [t for t in (input_name, *OUTPUTS) if t.split(":")[0] not in nodes]
    if missing:
        raise TfImportFailed(
            f"model spec {name}: not a TF Object Detection API graph: no {', '.join(missing)}"
        )
    converted, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=[input_name], output_names=list(OUTPUTS), opset=OPSET
    )
    data = converted.SerializeToString()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_file = out_dir / f"{name}.onnx"
    onnx_file.write_bytes(data)
    licence_file = out_dir / f"{name}.LICENSE"
    licence_file.write_text(licence_text)
    source = {**template.get("source", {}), "licence_file": licence_file.name}
    notes = [
        *template.get("notes", ()),
        f"converted from the frozen graph by tf2onnx {tf2onnx.__version__} (TensorFlow "
        f"{tf.__version__}), opset {OPSET}",
    ]
    spec = parse_spec(
        {
            **template,
            "file": onnx_file.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "source": source,
            "notes": notes,
        }
    )
    difference = _difference(graph_def, input_name, session(onnx_file, 1), check_frames)
    if difference > TOLERANCE:
        onnx_file.unlink()
        raise TfImportFailed(
            f"model spec {name}: the converted graph differs from TensorFlow by "
            f"{difference:.2g} (> {TOLERANCE:g})"
        )
    spec_path = out_dir / f"{name}.spec.json"
    spec.write(spec_path)
    return Converted(spec_path, difference)


def _difference(
    graph_def: Any, input_name: str, ort_session: Any, frames: Sequence[np.ndarray]
) -> float:
    """The largest difference of box corners and scores between TensorFlow and ONNX Runtime
    over each frame's top detections."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    worst = 0.0
    with tf.compat.v1.Session(graph=graph) as tf_session:
        for frame in frames:
            batch = np.ascontiguousarray(frame[None])
            theirs = tf_session.run(list(OUTPUTS), {input_name: batch})
            ours = ort_session.run(None, {ort_session.get_inputs()[0].name: batch})
            for a, b in zip(ours[:2], theirs[:2], strict=True):
                worst = max(worst, float(np.abs(a[0][:COMPARED] - b[0][:COMPARED]).max()))
    return worst
