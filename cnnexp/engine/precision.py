"""Numeric precision and compilation of a model: `device.precision` and `device.compile`.

Mixed precision runs the forward pass under `torch.autocast`, entered by the code that runs the model
(the training step and evaluation in engine/trainer.py; scores, features and pictures through the
run's `precision`): the model itself is left as it is, so its methods, hooks and state_dict keys are
the class's own. The parameters, the optimizer state and so the checkpoints stay float32. fp16 needs a gradient scaler and a CUDA GPU; bf16
runs on CPU and CUDA. `auto` picks bf16 only where it was measured faster and no less accurate (a CPU
with AMX tile units; a CUDA GPU with bfloat16), else fp32, and says why (docs/results/precision.md).
"""

import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnexp.utils.errors import UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str  # fp32, bf16 or fp16 (auto resolved)
    device_type: str  # cpu or cuda
    reason: str = ""  # why `auto` chose it; empty when the user named it

    def autocast(self):
        """The context for a forward pass at this precision (`with precision.autocast(): model(x)`);
        outputs may be bfloat16/float16: the callers take `.float()` before losses and scores."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.name])

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none."""
        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None

    def describe(self) -> str:
        return f"{self.name} (auto: {self.reason})" if self.reason else self.name


def resolve_precision(device_cfg, device: torch.device) -> Precision:
    """The precision a run uses on `device`; one-line errors for names it cannot run."""
    name = str(device_cfg.precision)  # one of schemas.run.PRECISIONS
    if name == "auto":
        chosen, reason = auto_choice(device)
        return Precision(chosen, device.type, reason)
    if name == "fp16" and device.type != "cuda":
        raise UserError(f"device.precision=fp16 needs a CUDA GPU (this run is on {device.type}); "
                        "use device.precision=bf16 or device.precision=fp32")
    return Precision(name, device.type)


def auto_choice(device: torch.device) -> tuple[str, str]:
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{torch.cuda.get_device_name(device)} computes in bfloat16"
        return "fp32", f"{torch.cuda.get_device_name(device)} has no bfloat16 support"
    units = cpu_bf16_units()
    if units == "AMX":
        return "bf16", "this CPU has AMX bfloat16 tile units (bf16 measured 1.8-3.8x faster on such a CPU)"
    if units == "AVX512-BF16":
        return "fp32", ("this CPU has AVX512-BF16 but no AMX: bf16 measured faster for LeNet and VGG16 but not "
                        "for AlexNet-BN or ResNet18 on such a CPU (docs/results/precision.md); device.precision=bf16 to use it")
    return "fp32", "this CPU has no bfloat16 instructions (AMX or AVX512-BF16): bf16 would be emulated, slower"


def cpu_bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """"AMX" or "AVX512-BF16" when the CPU computes bfloat16 products in hardware, else None."""
    try:
        flags = set(next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "").split())
    except OSError:
        return None
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def compile_model(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """torch.compile the module in place (nn.Module.compile): its state_dict keys stay those of the
    eager model, so compiled and eager runs load each other's checkpoints."""
    if enabled:
        check_compiler()
        model.compile()
    return model


def check_compiler() -> None:
    """torch.compile's CPU code generator builds C++; without a compiler it fails at the first step,
    deep in a traceback. Look for the compiler it would use now, before anything runs."""
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler as error:
        raise UserError(f"device.compile=true needs a C++ compiler for torch.compile ({str(error).splitlines()[0]}); "
                        "install gcc (apt-get install g++, or set CXX) or use device.compile=false") from None


def prepare_for_inference(model: torch.nn.Module, device_cfg, device: torch.device) -> Precision:
    """The precision a model on `device` runs under (the callers enter its autocast) and the compile
    switch applied (eval, predict, serve, features, viz); `auto` says on stderr what it chose, so a
    command's output stays clean."""
    precision = resolve_precision(device_cfg, device)
    if precision.reason:
        print(f"device.precision=auto: {precision.describe()}", file=sys.stderr)
    compile_model(model, bool(device_cfg.compile))
    return precision
