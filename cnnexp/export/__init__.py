"""`cnnexp export`: a trained run as a file that runs without cnnexp (ONNX, TorchScript), the metadata
that says how to feed it, the check that it answers as the PyTorch model does, and the ONNX Runtime
model that `cnnexp serve backend=onnxruntime` runs."""
