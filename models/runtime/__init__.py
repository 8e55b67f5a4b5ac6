"""Where and how the networks run: backend, device and threads (placement), the shipped ONNX
graphs (graphs, shipped), users' plug-in models (plugins), and the training stack's torch
backend and ONNX export (build, export)."""
