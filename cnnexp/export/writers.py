"""The model file itself: ONNX through PyTorch's torch.export-based exporter, or TorchScript by
tracing. Both take the network as evaluation runs it (fp32, CPU, eval mode) and one example batch."""

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch

from cnnexp.export.runtime import EXTRA_HINT
from cnnexp.utils.errors import UserError

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}  # default suffixes: the two JSONs differ too
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def write_model(model: torch.nn.Module, example: torch.Tensor, path: Path, fmt: str, opset: int,
                dynamic_batch: bool) -> None:
    if fmt == "onnx":
        write_onnx(model, example, path, opset, dynamic_batch)
    else:
        write_torchscript(model, example, path)


def write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, dynamic_batch: bool) -> None:
    """One ONNX file (weights inside); with `dynamic_batch` the batch dimension is symbolic, so one file
    answers any batch size (the example must then hold at least 2 images: torch.export specialises a
    size of 1), else it is the example's."""
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError as exc:
            raise UserError(f"format=onnx needs the {module} package; {EXTRA_HINT}") from exc
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    with quiet():
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=shapes, external_data=False)
        program.save(str(path), external_data=False)
    if dynamic_batch and not batch_is_free(path):
        raise UserError("this model's exported graph fixes the batch size (its forward turns the batch size into "
                        "a number); export with dynamic_batch=false, or make the model use x.shape[0]")


def batch_is_free(path: Path) -> bool:
    """Whether the ONNX file's input has a named (symbolic) batch dimension rather than a number."""
    import onnx

    first = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return bool(first.dim_param) and not first.HasField("dim_value")


def write_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """A traced TorchScript module (`torch.jit.load` runs it without cnnexp; batch size is free)."""
    with quiet(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(path))


@contextlib.contextmanager
def quiet():
    """The exporters' progress lines, log records and deprecation warnings are not the user's business;
    a failure still raises."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)
