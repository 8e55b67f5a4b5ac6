"""Inference runtimes besides torch eager: ONNX export and ONNX Runtime sessions."""
