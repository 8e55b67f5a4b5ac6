"""ONNX Runtime sessions as every model here runs them (CPU threads bounded, no spinning): the
one place onnxruntime is opened, imported without torch so the lean runtime can use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class OnnxUnavailableError(RuntimeError):
    """onnxruntime is not installed or cannot load a model."""


def session(path: Path, threads: int) -> Any:
    """A CPU InferenceSession with `threads` intra-op threads and one inter-op thread."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise OnnxUnavailableError("the onnx backend needs `pip install onnxruntime`") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # shape-inference warnings about dynamic detections counts
    # ONNX Runtime's idle intra-op threads spin by default: in a worker that shares its cores
    # with Faust, the sink, the broker and Postgres they steal the CPU the others need
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
