"""Exporting models to run outside PyTorch: ONNX graphs (``export/onnx.py``) and the directory layout that
the ONNX Runtime backend (``inference/onnx.py``) reads (``export/layout.py``, importable without torch)."""
