"""`cnnexp export`: a trained run (or a probe run) as an ONNX or TorchScript file with its metadata,
checked against the PyTorch model before it is kept."""

from pathlib import Path

from cnnexp.runner.app import app_main

CONFIG_NAME = "export"
HELP = "a trained run as ONNX or TorchScript with its preprocessing, checked"
READ_ONLY = True  # composed once, run without a Hydra job (see runner/app.py)
main = app_main("export", __name__)  # cnnexp export ... -> this module's app
DEVICE = {"type": "cpu", "channels_last": False, "threads": None, "precision": "fp32", "compile": False}


def run(cfg, overrides: list[str]) -> None:
    from omegaconf import OmegaConf

    from cnnexp.export.package import export_run
    from cnnexp.export.writers import FORMATS
    from cnnexp.inference.open_run import dataset_overrides, open_run
    from cnnexp.utils.runs import export_dir

    device = OmegaConf.create(DEVICE)  # the exported graph is the fp32 CPU network, whatever the run trained on
    opened = open_run(cfg.run, cfg.checkpoint, cfg.which, device, dataset_overrides(cfg, overrides), cfg.resize, probe=True)
    default_out = export_dir(cfg.run, opened.checkpoint_path) / f"model{FORMATS[cfg.format]}"
    out = Path(cfg.out).expanduser() if cfg.out else default_out
    exported = export_run(opened, cfg.format, out, cfg.run, cfg.opset, cfg.dynamic_batch)
    check = exported.metadata["check"]
    print(f"wrote {exported.model_file} ({cfg.format}) and {exported.metadata_file}")
    print(f"checked on {check['images']} images of the run's dataset: max |logit difference| "
          f"{check['max_abs_diff']:.2g}, top-1 agrees on {check['top1_agree']}/{check['images']}")
