"""ONNX Runtime behind the `nn.Module` interface the inference code calls, so `serve` and the export
check score an exported file through the same path as the PyTorch model."""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnexp.utils.errors import UserError

EXTRA_HINT = 'pip install "cnnexp[export]"'


def require_onnx_runtime():
    """onnxruntime, or one error line naming the install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise UserError(f"ONNX Runtime is not installed ({exc.name} missing); {EXTRA_HINT}") from exc
    return onnxruntime


class OnnxModel(nn.Module):
    """An exported model file run by ONNX Runtime on the CPU: float32 N x C x H x W in, logits out."""

    def __init__(self, path: Path, threads: int | None = None):
        super().__init__()
        ort = require_onnx_runtime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile types
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise UserError(f"cannot load {path} with ONNX Runtime ({first}); export it again with cnnexp export") from exc
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])
