"""ONNX models the project did not train (imported pretrained detectors, a user's own), run as
their model spec says."""
