"""Self-supervised training of the FSR engines (`python run.py train ...`), export to ONNX, and
camera adaptation. Needs torch (requirements-dev.txt); inference does not."""
