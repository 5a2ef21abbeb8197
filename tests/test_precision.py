"""device.precision and device.compile: bf16 training keeps float32 checkpoints and resumes exactly,
fp16 on the CPU is refused, auto says what it chose, inference under bf16 agrees with fp32, and
compiled and eager runs load each other's checkpoints."""

import json

import pytest
import torch
from conftest import read_json
from omegaconf import OmegaConf

from cnnexp.cli import main
from cnnexp.engine import precision as precision_module
from cnnexp.engine.precision import resolve_precision

TINY = ("model.nkerns=[4,8]", "model.hidden=32", "optimizer.lr=0.1", "trainer.batch_size=20", "dataset.limit=80")


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    """A LeNet trained in float32 long enough to be right about most faces."""
    folder = tmp_path_factory.mktemp("runs") / "fp32"
    assert main(["train", "model.nkerns=[8,16]", "model.hidden=64", "optimizer.lr=0.1", "trainer.batch_size=40",
                 "trainer.epochs=25", f"hydra.run.dir={folder}"]) == 0
    return folder


def checkpoint(run, which="last"):
    return torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True)


def test_bf16_run_trains_says_so_and_keeps_float32_checkpoints(cnnexp, workdir):
    result = cnnexp("train", *TINY, "trainer.epochs=2", "device.precision=bf16", "hydra.run.dir=run")
    assert result.code == 0, result.err
    assert "precision bf16" in result.out
    assert read_json(workdir / "run" / "metrics.json")["precision"] == "bf16"
    for which in ("last", "best"):
        ckpt = checkpoint(workdir / "run", which)
        assert ckpt["precision"] == "bf16"
        assert {v.dtype for v in ckpt["model"].values()} == {torch.float32}
        momentum_free = [v for state in ckpt["optimizer"]["state"].values() for v in state.values()
                         if isinstance(v, torch.Tensor) and v.is_floating_point()]
        assert all(v.dtype == torch.float32 for v in momentum_free)


def test_bf16_changes_the_arithmetic(cnnexp, workdir):
    """The switch does something: the same run in bf16 ends with (slightly) different weights."""
    for precision in ("fp32", "bf16"):
        assert cnnexp("train", *TINY, "trainer.epochs=1", f"device.precision={precision}",
                      f"hydra.run.dir={precision}").code == 0
    a, b = checkpoint(workdir / "fp32")["model"], checkpoint(workdir / "bf16")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k], b[k], atol=0.05) for k in a)


def test_precision_is_entered_by_the_callers_not_patched_into_the_model():
    """A bf16 run's model keeps its class's forward (so an EMA copy, hooks and state_dict are plain);
    the code that runs it enters the autocast, and scores come out float32."""
    from cnnexp.engine.assemble import ready
    from cnnexp.inference.guesses import class_probs

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    pipeline = type("Plain", (), {"__call__": lambda self, x, train=False: x.float() / 255,
                                  "memory_format": torch.contiguous_format})()
    device = OmegaConf.create({"type": "cpu", "precision": "bf16", "compile": False, "channels_last": False})
    parts = ready(model, pipeline, (3, 2, 2), device)
    assert parts.precision.name == "bf16" and not any("forward" in vars(m) for m in model.modules())
    images = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    restored = type("Opened", (), {"model": model, "pipeline": pipeline, "device": parts.device,
                                   "precision": parts.precision})()
    probs = class_probs(restored, images)
    exact = model(images.float() / 255).softmax(1)
    assert probs.dtype == torch.float32 and torch.allclose(probs, exact, atol=0.02)
    assert not torch.equal(probs, exact)  # computed in bfloat16


def test_resume_within_bf16_is_exact(cnnexp, workdir):
    config = (*TINY, "trainer.shuffle=true", "augmentation=patch", "optimizer=momentum", "device.precision=bf16")
    assert cnnexp("train", *config, "trainer.epochs=3", "hydra.run.dir=straight").code == 0
    assert cnnexp("train", *config, "trainer.epochs=1", "hydra.run.dir=first").code == 0
    result = cnnexp("train", "trainer.resume=first", "trainer.epochs=3", "hydra.run.dir=resumed")
    assert result.code == 0, result.err
    assert "precision bf16" in result.out
    straight, resumed = checkpoint(workdir / "straight")["model"], checkpoint(workdir / "resumed")["model"]
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.parametrize("args", [("device=cpu",), ("device=auto",)])
def test_fp16_on_cpu_is_one_line_error(cnnexp, workdir, args):
    if torch.cuda.is_available() and args == ("device=auto",):
        pytest.skip("a GPU is visible: fp16 runs there")
    result = cnnexp("train", *TINY, *args, "device.precision=fp16", "hydra.run.dir=run")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: device.precision=fp16 needs a CUDA GPU (this run is on cpu); "
        "use device.precision=bf16 or device.precision=fp32"]
    assert not (workdir / "run" / "checkpoints").exists()


def test_unknown_precision_is_one_line_error(cnnexp, workdir, fp32_run):
    result = cnnexp("train", *TINY, "device.precision=fp8", "hydra.run.dir=run")
    assert result.code == 2 and result.err.strip() == \
        "error: device.precision=fp8 is not one of: fp32, bf16, fp16, auto"
    result = cnnexp("eval", f"run={fp32_run}", "device=cpu", "device.precision=fp16")
    assert result.code == 2 and "use device.precision=bf16 or device.precision=fp32" in result.err


@pytest.mark.parametrize("flags, chosen, named", [("fpu avx512f amx_bf16 avx512_bf16", "bf16", "AMX"),
                                                  ("fpu avx512f avx512_bf16", "fp32", "AVX512-BF16 but no AMX"),
                                                  ("fpu avx2 avx512f", "fp32", "no bfloat16 instructions")])
def test_auto_on_cpu_picks_bf16_only_with_amx(monkeypatch, tmp_path, flags, chosen, named):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    read_flags = precision_module.cpu_bf16_units
    monkeypatch.setattr(precision_module, "cpu_bf16_units", lambda: read_flags(cpuinfo))
    precision = resolve_precision(OmegaConf.create({"precision": "auto"}), torch.device("cpu"))
    assert precision.name == chosen
    assert named in precision.reason and precision.describe().startswith(f"{chosen} (auto: ")


def test_auto_run_says_what_it_chose(cnnexp, workdir):
    result = cnnexp("train", *TINY, "trainer.epochs=1", "device=cpu", "device.precision=auto", "hydra.run.dir=run")
    assert result.code == 0, result.err
    chosen = "bf16" if precision_module.cpu_bf16_units() == "AMX" else "fp32"
    assert f"precision {chosen} (auto: " in " ".join(result.out.split())
    assert read_json(workdir / "run" / "metrics.json")["precision"] == chosen


def test_eval_under_bf16_agrees_with_fp32(cnnexp, fp32_run):
    results = {}
    for precision in ("fp32", "bf16"):
        result = cnnexp("eval", f"run={fp32_run}", "split=train", "device=cpu", f"device.precision={precision}")
        assert result.code == 0, result.err
        results[precision] = read_json(fp32_run / "eval" / "train" / "eval.json")
    assert results["fp32"]["precision"] == "fp32" and results["bf16"]["precision"] == "bf16"
    assert results["fp32"]["error"] < 0.2  # a model that learnt something, so agreement means something
    assert abs(results["bf16"]["error"] - results["fp32"]["error"]) <= 0.02
    assert results["bf16"]["loss"] == pytest.approx(results["fp32"]["loss"], rel=0.05)


def test_predict_under_bf16_agrees_with_fp32(cnnexp, fp32_run):
    rows = {}
    for precision in ("fp32", "bf16"):
        result = cnnexp("predict", f"run={fp32_run}", "image=olivetti", "topk=1", "--json", "device=cpu",
                        f"device.precision={precision}")
        assert result.code == 0, result.err
        rows[precision] = [json.loads(line)["top"][0] for line in result.out.strip().splitlines()]
    assert len(rows["fp32"]) == 400
    same = sum(a["label"] == b["label"] for a, b in zip(rows["fp32"], rows["bf16"]))
    assert same >= 0.97 * 400
    assert max(abs(a["prob"] - b["prob"]) for a, b in zip(rows["fp32"], rows["bf16"])
               if a["label"] == b["label"]) < 0.1


def eval_json(cnnexp, run, *args) -> dict:
    result = cnnexp("eval", f"run={run}", "which=last", "device=cpu", *args)
    assert result.code == 0, result.err
    return read_json(run / "eval" / "test-last" / "eval.json")


@pytest.mark.slow  # four torch.compile compilations: 1-3 minutes on two shared cores
def test_compiled_and_eager_runs_load_each_others_checkpoints(cnnexp, workdir):
    tiny = (*TINY, "trainer.epochs=1", "dataset.limit=40")
    assert cnnexp("train", *tiny, "device.compile=true", "hydra.run.dir=compiled").code == 0
    assert cnnexp("train", *tiny, "hydra.run.dir=eager").code == 0
    assert read_json(workdir / "compiled" / "metrics.json")["compiled"] is True
    compiled_keys = checkpoint(workdir / "compiled")["model"].keys()
    assert compiled_keys == checkpoint(workdir / "eager")["model"].keys()
    assert not any(key.startswith("_orig_mod.") for key in compiled_keys)
    # the compiled run's weights in an eager eval, the eager run's in a compiled one: same numbers both ways
    for run in ("compiled", "eager"):
        eager = eval_json(cnnexp, workdir / run)
        compiled = eval_json(cnnexp, workdir / run, "device.compile=true")
        assert compiled["error"] == eager["error"]
        assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-4)


def test_missing_compiler_is_one_line_error(cnnexp, workdir, monkeypatch):
    from torch._inductor import config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/g++",))
    result = cnnexp("train", *TINY, "device.compile=true", "hydra.run.dir=run")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: device.compile=true needs a C++ compiler")
    assert "install gcc" in lines[0] and "device.compile=false" in lines[0]
