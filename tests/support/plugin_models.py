"""Users' own ONNX models for the plug-in tests, made here with torch as a user's export would
be, each with its model spec (weights/README.md, "The model spec format"):
- `gender_plugin`: a gender classifier exported the way Keras exports one (NHWC, BGR pixels
  0-255 in, normalisation and softmax inside the graph, its own label names mapped onto ours).
  Its network is the shipped attribute network's gender head, so its probabilities must equal
  the shipped head's on the same crops: a wrong layout, channel order or normalisation shows.
- `pattern_plugin`: an added head from a small network with random weights (NCHW, logits,
  64 px, normalised outside the graph): it checks the plumbing, not a figure.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fashionstream.core.settings import REPO_ROOT
from models import weights as W
from models.attributes.classifier import AttributeClassifier
from models.onnx_models.spec import SPEC_FORMAT

WEIGHTS = REPO_ROOT / "weights"
GENDER_NAMES = {"Boys": "boy", "Girls": "girl", "Men": "man", "Unisex": "any", "Women": "woman"}
PATTERNS = ("plain", "striped", "checked")


class _KerasStyleGender(nn.Module):
    """NHWC BGR 0-255 -> the shipped network's gender probabilities."""

    def __init__(self, classifier: AttributeClassifier) -> None:
        super().__init__()
        self.network = classifier.network
        self.index = list(classifier.heads).index("gender")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        rgb = image.permute(0, 3, 1, 2).flip(1)
        logits = self.network((rgb / 255.0 - 0.5) / 0.5)[self.index]
        return torch.softmax(logits, dim=1)


def _export(module: nn.Module, example: torch.Tensor, path: Path, output: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["image"],
            output_names=[output],
            dynamic_axes={"image": {0: "batch"}, output: {0: "batch"}},
        )


def _spec(path: Path, onnx_file: Path, **fields: Any) -> Path:
    spec = {
        "format": SPEC_FORMAT,
        "kind": "classifier",
        "file": onnx_file.name,
        "sha256": W.sha256_of(onnx_file),
        "source": {"licence": "Apache-2.0", "attribution": "made by the fashionstream tests"},
        **fields,
    }
    path.write_text(json.dumps(spec, indent=2))
    return path


def gender_plugin(folder: Path) -> Path:
    """The spec of a Keras-style gender classifier (head "gender": replaces the shipped one)."""
    classifier = AttributeClassifier.from_weights(WEIGHTS, with_embedding=False)
    size = classifier.input_size
    onnx_file = folder / "my_gender.onnx"
    example = torch.zeros(2, size, size, 3)
    _export(_KerasStyleGender(classifier), example, onnx_file, "probabilities")
    return _spec(
        folder / "my_gender.spec.json",
        onnx_file,
        name="my_gender",
        input={
            "name": "image",
            "size": [size, size],
            "layout": "NHWC",
            "channels": "BGR",
            "scale": 1.0,
        },
        output={"decode": "probabilities", "head": "gender"},
        classes=[GENDER_NAMES[label] for label in classifier.heads["gender"]],
        class_map={theirs: ours for ours, theirs in GENDER_NAMES.items()},
    )


def pattern_plugin(folder: Path) -> Path:
    """The spec of a small random-weight classifier adding the head "pattern"."""
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, len(PATTERNS)),
    )
    onnx_file = folder / "pattern.onnx"
    _export(network, torch.zeros(2, 3, 64, 64), onnx_file, "logits")
    return _spec(
        folder / "pattern.spec.json",
        onnx_file,
        name="pattern",
        input={
            "name": "image",
            "size": [64, 64],
            "scale": 255.0,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        },
        output={"decode": "softmax", "head": "pattern"},
        classes=list(PATTERNS),
        class_map={},
    )


KERAS_LABELS = ("Casual", "Ethnic", "Formal", "Sports", "Party")


def vgg_style_keras_classifier(folder: Path, size: int = 64) -> tuple[Path, Path]:
    """A Keras classifier with VGG19's shape (conv blocks of 2, 2, 4, 4, 4 3x3 convolutions,
    each block max-pooled; narrow, so it converts in seconds) and a softmax head over
    KERAS_LABELS, saved as .h5 as the Flask pipeline's were; random weights, the head scaled so
    its probabilities spread (a near-uniform softmax would hide a wrong conversion). Returns
    the .h5 and its labels file. Needs the `keras` extra."""
    import keras

    keras.utils.set_random_seed(0)
    layers = [keras.Input((size, size, 3))]
    for block, (convs, width) in enumerate(zip((2, 2, 4, 4, 4), (8, 16, 32, 32, 32), strict=True)):
        layers += [
            keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"b{block}c{i}")
            for i in range(convs)
        ]
        layers.append(keras.layers.MaxPooling2D(name=f"b{block}pool"))
    layers += [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(KERAS_LABELS), activation="softmax", name="style"),
    ]
    model = keras.Sequential(layers)
    dense = model.get_layer("style")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 40.0, bias])
    path = folder / "vgg_style.h5"
    model.save(path)
    labels = folder / "vgg_style_labels.txt"
    labels.write_text("\n".join(KERAS_LABELS) + "\n")
    return path, labels


def keras_plugin(folder: Path) -> Path:
    """The spec of `vgg_style_keras_classifier` imported as `fashionstream import keras` does
    (head "usage_vgg", caffe preprocessing as VGG19's)."""
    from models.onnx_models.keras_import import import_keras

    model, labels = vgg_style_keras_classifier(folder)
    result = import_keras(
        model,
        head="usage_vgg",
        labels=labels.read_text().split(),
        out_dir=folder,
        name="vgg_style",
        preprocessing="caffe",
    )
    return result.spec_path
