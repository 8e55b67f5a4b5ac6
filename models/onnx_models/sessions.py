"""ONNX Runtime sessions as every model here runs them (CPU threads bounded, no spinning; the
CUDA provider when asked for): the one place onnxruntime is opened, imported without torch so
the lean runtime can use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class OnnxUnavailableError(RuntimeError):
    """onnxruntime is not installed or cannot load a model."""


def _onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise OnnxUnavailableError(
            "the onnx backend needs onnxruntime: pip install 'fashionstream[all]' "
            "(or 'fashionstream[gpu]' on a machine with CUDA)"
        ) from exc
    return ort


def cuda_available() -> bool:
    """Whether this onnxruntime has the CUDA provider (the onnxruntime-gpu package, the `gpu`
    extra); the plain package has only the CPU one."""
    return CUDA_PROVIDER in _onnxruntime().get_available_providers()


def session(path: Path, threads: int, *, cuda: bool = False) -> Any:
    """An InferenceSession with `threads` intra-op threads and one inter-op thread, on the CUDA
    provider when `cuda` (the CPU provider runs what CUDA does not)."""
    ort = _onnxruntime()
    if cuda:
        # onnxruntime-gpu's CUDA provider finds the CUDA and cuDNN of the nvidia-* wheels only
        # once they are loaded (torch used to load them; the runtime install has no torch)
        ort.preload_dlls()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # shape-inference warnings about dynamic detections counts
    # ONNX Runtime's idle intra-op threads spin by default: in a worker that shares its cores
    # with Faust, the sink, the broker and Postgres they steal the CPU the others need
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [CUDA_PROVIDER, CPU_PROVIDER] if cuda else [CPU_PROVIDER]
    return ort.InferenceSession(str(path), options, providers=providers)
