"""FASHIONSTREAM_DEVICE and _BACKEND: one meaning for inference and every trainer, and a clear
error, never a silent CPU run, when what is asked for is not installed."""

from pathlib import Path

import pytest
import torch

from models.runtime import placement
from models.runtime.build import resolve_device
from models.runtime.placement import TrainingStackMissing, resolve_runtime


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(placement.sessions, "cuda_available", lambda: False)


@pytest.mark.usefixtures("no_gpu")
def test_auto_is_the_cpu_without_a_gpu(tmp_path: Path) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    runtime = resolve_runtime("auto", "auto", 0, tmp_path)
    assert (runtime.backend, runtime.device) == ("onnx", "cpu")


def test_auto_is_the_gpu_when_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    runtime = resolve_runtime("auto", "auto", 0, Path("unused"))
    assert (runtime.backend, runtime.device) == ("torch", "cuda")


def test_the_onnx_backend_takes_onnxruntimes_cuda_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    # the `gpu` extra: onnxruntime-gpu, no torch
    monkeypatch.setattr(placement, "torch_installed", lambda: False)
    monkeypatch.setattr(placement.sessions, "cuda_available", lambda: True)
    runtime = resolve_runtime("auto", "auto", 0, Path("unused"))
    assert (runtime.backend, runtime.device, runtime.cuda) == ("onnx", "cuda", True)
    assert resolve_runtime("onnx", "cpu", 0, Path("unused")).device == "cpu"


@pytest.mark.usefixtures("no_gpu")
def test_cuda_without_a_gpu_is_an_error_not_a_silent_cpu_run(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match=r"no CUDA provider: pip install 'fashionstream\[gpu\]'"):
        resolve_runtime("auto", "cuda", 0, tmp_path)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_runtime("torch", "cuda", 0, tmp_path)


def test_the_torch_backend_without_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "torch_installed", lambda: False)
    with pytest.raises(TrainingStackMissing, match=r"pip install 'fashionstream\[train\]'"):
        resolve_runtime("torch", "cpu", 0, Path("unused"))


def test_threads_never_pass_the_cores() -> None:
    cores = placement.available_cores()
    assert resolve_runtime("onnx", "cpu", 0, Path("unused")).threads == cores
    assert resolve_runtime("onnx", "cpu", cores + 8, Path("unused")).threads == cores


def test_an_unknown_device_or_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_runtime("onnx", "tpu", 0, Path("unused"))
    with pytest.raises(ValueError, match="auto, torch or onnx"):
        resolve_runtime("tensorrt", "cpu", 0, Path("unused"))
