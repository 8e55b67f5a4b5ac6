"""Where inference runs: the backend (ONNX Runtime or torch), the device and the CPU threads,
decided from the settings without importing torch unless torch is installed and may be asked.

The runtime install (`pip install 'fashionstream[all]'`) has ONNX Runtime and no torch: its
backend is onnx, on the CPU, or on CUDA with the `gpu` extra (onnxruntime-gpu). torch is the
training stack (`fashionstream[train]`); with it, a GPU that torch sees runs the torch backend,
as it was measured (README, "Measured here").
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from models.onnx_models import sessions

BACKENDS = ("onnx", "torch")
DEVICES = ("cpu", "cuda")
TRAIN_EXTRA = "pip install 'fashionstream[train]' (from a clone: pip install -e '.[train]')"
GPU_EXTRA = "pip install 'fashionstream[gpu]' (from a clone: pip install -e '.[gpu]')"


class TrainingStackMissing(RuntimeError):
    """Something asked for torch (the torch backend, evaluating or exporting weights) in an
    install without the training stack. Its message is one line naming the extra."""


@dataclass(frozen=True)
class Runtime:
    """Where and how inference runs: backend "onnx" or "torch", device "cpu" or "cuda", CPU
    threads, and where graphs of weights that ship none are exported (training runs)."""

    backend: str
    device: str
    threads: int
    onnx_cache: Path

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def torch_installed() -> bool:
    """Whether the training stack is here, found without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a blocked or half-removed torch is not one
        return False


def require_torch(why: str) -> None:
    """Raise TrainingStackMissing (`why` names what needed it) unless torch is installed."""
    if not torch_installed():
        raise TrainingStackMissing(f"{why} needs the training stack: {TRAIN_EXTRA}")


def torch_sees_cuda() -> bool:
    if not torch_installed():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_runtime(backend: str, device: str, threads: int, onnx_cache: Path) -> Runtime:
    """FASHIONSTREAM_BACKEND / _DEVICE / _TORCH_THREADS made concrete. threads 0 = every core,
    never more than the cores. backend auto: torch where torch is installed and sees a GPU
    (device auto or cuda), else onnx. device auto: a GPU when the backend has one (torch:
    torch.cuda; onnx: onnxruntime's CUDA provider), else the CPU. A device or backend asked for
    and not here is an error naming what to install, never a silent fall back to the CPU."""
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    if device not in ("auto", *DEVICES):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    cores = available_cores()
    threads = min(threads or cores, cores)
    if backend == "auto":
        backend = "torch" if device != "cpu" and torch_sees_cuda() else "onnx"
    if backend == "torch":
        require_torch("the torch backend")
        gpu = torch_sees_cuda()
        if device == "cuda" and not gpu:
            raise RuntimeError("device cuda asked for, but torch sees no CUDA GPU")
        return Runtime(backend, "cuda" if device != "cpu" and gpu else "cpu", threads, onnx_cache)
    gpu = sessions.cuda_available()
    if device == "cuda" and not gpu:
        raise RuntimeError(
            f"device cuda asked for, but onnxruntime has no CUDA provider: {GPU_EXTRA}"
        )
    return Runtime(backend, "cuda" if device != "cpu" and gpu else "cpu", threads, onnx_cache)
