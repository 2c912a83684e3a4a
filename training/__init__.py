"""Training side: data staging, model training, calibration and ONNX export (needs the `train` extra)."""
