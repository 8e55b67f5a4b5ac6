"""`fashionstream import keras`: a Keras classifier saved as .h5 (the Flask pipeline's VGG19
gender, master-category and article-type models are such files) converted to an ONNX graph and
its model spec, ready for FASHIONSTREAM_PLUGINS. The conversion needs the `keras` extra
(tensorflow-cpu, tf2onnx), imported only here; the converted graph runs in ONNX Runtime alone.
The graph is checked against Keras on real crops before anything is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from models import weights as W
from models.onnx_models.classifier import OnnxSpecClassifier
from models.onnx_models.sessions import session
from models.onnx_models.spec import (
    PREPROCESSING,
    SPEC_FORMAT,
    Converted,
    SpecError,
    parse_spec,
)

OPSET = 17
# Keras and ONNX Runtime compute the same network in float32: the largest difference of a
# probability allowed between them on the check crops
TOLERANCE = 1e-4


class KerasImportFailed(SpecError):
    """A model that is not a square-input classifier, labels that do not fit it, or a graph
    that does not compute what Keras computes."""


def import_keras(
    model_path: Path,
    *,
    head: str,
    labels: Sequence[str],
    out_dir: Path,
    name: str,
    preprocessing: str = "none",
    class_map: Mapping[str, str] | None = None,
    licence: str = "",
    attribution: str = "",
    check_crops: Sequence[np.ndarray] = (),
) -> Converted:
    """Convert the Keras classifier at `model_path`, check it, and write `<name>.onnx` and
    `<name>.spec.json` into `out_dir`. `check_crops`: RGB uint8 crops the graph and Keras must
    agree on (random pixels are added to them)."""
    import tensorflow as tf
    import tf2onnx

    if preprocessing not in PREPROCESSING:
        raise KerasImportFailed(f"preprocessing: {preprocessing!r} not in {sorted(PREPROCESSING)}")
    model = tf.keras.models.load_model(str(model_path), compile=False)
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise KerasImportFailed(
            f"{model_path}: input {shape}: a classifier of square RGB crops (None, S, S, 3)"
        )
    size = int(shape[1])
    units = int(model.output_shape[-1])
    if len(labels) != units:
        raise KerasImportFailed(f"labels: {len(labels)} given, the model has {units} outputs")
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    # the model's forward as a tf.function: tf2onnx's from_keras trips over Keras 3's tensor
    # names on a Sequential model; a function of the model converts whatever built it
    forward = tf.function(lambda image: model(image, training=False), input_signature=signature)
    graph, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_file = out_dir / f"{name}.onnx"
    data = graph.SerializeToString()
    onnx_file.write_bytes(data)
    spec = parse_spec(
        {
            "format": SPEC_FORMAT,
            "kind": "classifier",
            "name": name,
            "file": onnx_file.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "input": {
                "name": graph.graph.input[0].name,
                "size": [size, size],
                "layout": "NHWC",
                **PREPROCESSING[preprocessing],
            },
            "output": {
                "decode": "probabilities" if activation == "softmax" else "softmax",
                "head": head,
            },
            "classes": list(labels),
            "class_map": dict(class_map or {}),
            "source": {
                "path": model_path.name,
                "sha256": W.sha256_of(model_path),
                "licence": licence,
                "attribution": attribution,
            },
            "notes": [
                f"converted from Keras by tf2onnx {tf2onnx.__version__} (TensorFlow "
                f"{tf.__version__}), opset {OPSET}; preprocessing {preprocessing!r}"
            ],
        }
    )
    classifier = OnnxSpecClassifier(session(onnx_file, 1), spec)
    crops = [*check_crops, *np.random.default_rng(0).integers(0, 256, (4, size, size, 3))]
    crops = [np.asarray(c, np.uint8) for c in crops]
    ours = np.stack([p[head] for p in classifier.predict(crops)])
    theirs = np.asarray(model.predict(classifier.inputs(crops), verbose=0), np.float64)
    if activation != "softmax":
        theirs = np.exp(theirs - theirs.max(axis=1, keepdims=True))
        theirs /= theirs.sum(axis=1, keepdims=True)
    difference = float(np.abs(ours - theirs).max())
    if difference > TOLERANCE:
        onnx_file.unlink()
        raise KerasImportFailed(
            f"the converted graph differs from Keras by {difference:.2g} (> {TOLERANCE:g})"
        )
    spec_path = out_dir / f"{name}.spec.json"
    spec.write(spec_path)
    return Converted(spec_path, difference)
