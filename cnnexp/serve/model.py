"""The served model: a restored run, decoding uploads as `cnnexp predict` decodes files, and the same
scoring (`inference.guesses`), so the service answers the numbers `predict` prints; or several named
runs (`run={age:<run>,gender:<run>}`), each a ServedModel, answering together for each photo."""

import json
import os
import time
from pathlib import Path

import torch

from cnnexp.engine.build import set_threads
from cnnexp.inference.guesses import class_probs, top_guesses
from cnnexp.inference.inputs import decode_upload, prepare
from cnnexp.inference.open_run import open_run
from cnnexp.inference.scoring import require_crops
from cnnexp.inference.several import decode_channels, photo_inputs
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import about_run, exported_onnx


class ServedModel:
    def __init__(self, cfg, run=None):
        """`run`: one of the named runs; None: `run=` (with `checkpoint=`)."""
        set_threads(threads_per_worker(cfg))
        self.run, checkpoint = (cfg.run, cfg.checkpoint) if run is None else (run, None)
        self.restored = open_run(self.run, checkpoint, cfg.which, cfg.device, resize=cfg.resize, probe=True)
        if cfg.backend == "onnxruntime":
            self.restored.model = onnx_model(cfg, self.restored, self.run, checkpoint)
        if cfg.tencrop:
            require_crops(self.restored.pipeline, self.restored.image_shape)
        self.cfg = cfg
        self.detect_face, self.face_margin, self.topk = cfg.detect_face, cfg.face_margin, cfg.topk
        self.tencrop, self.mirror = cfg.tencrop, cfg.tencrop_mirror
        self.classify([torch.zeros(self.restored.image_shape, dtype=torch.uint8)])  # first-call set-up, not a user's wait

    def prepare(self, data: bytes, name: str):
        """(uint8 C x H x W tensor or None when no face was found, face box or None); UnreadableImage if undecodable."""
        shape = self.restored.image_shape
        image = decode_upload(data, name, shape[0], self.cfg.max_pixels)
        return prepare(image, shape, self.restored.resize, self.detect_face, self.face_margin)

    def classify(self, images: list[torch.Tensor]) -> tuple[list[list[dict]], float]:
        """The top-k guesses per image and the seconds the forward pass took."""
        start = time.perf_counter()
        probs = class_probs(self.restored, torch.stack(images), self.tencrop, self.mirror)
        guesses = top_guesses(probs, self.restored.class_names, self.topk)
        return guesses, time.perf_counter() - start

    def info(self) -> dict:
        restored, cfg = self.restored, self.cfg
        run = Path(str(self.run)).expanduser().resolve() if self.run is not None else None
        return {
            "run": str(run) if run else None,
            "checkpoint": str(restored.checkpoint_path.resolve()),
            "epoch": restored.epoch,
            "model": restored.config.model.name,
            "dataset": restored.config.dataset.get("name"),
            "class_names": restored.class_names,
            "image_shape": list(restored.image_shape),
            "input_shape": list(restored.pipeline.augmentation.out_shape),
            "backend": cfg.backend,
            "device": str(restored.device),
            "precision": restored.precision.name,
            "threads": torch.get_num_threads(),
            "metrics": run_metrics(run),
            "options": {key: cfg[key] for key in ("topk", "detect_face", "face_margin", "tencrop", "max_batch",
                                                   "max_wait_ms", "max_upload_mb", "max_pixels")} | {"resize": restored.resize},
        }


class ServedRuns:
    """Named runs behind one service: each a ServedModel (its own input, scoring and batcher); a photo is
    decoded once, in colour when any run takes colour, and its face found once (`inference.several`)."""

    def __init__(self, cfg, runs: dict[str, str]):
        self.models = {}
        for name, run in runs.items():
            with about_run(name):
                self.models[name] = ServedModel(cfg, run)
        self.restored = {name: model.restored for name, model in self.models.items()}
        self.cfg, self.channels = cfg, decode_channels(self.restored)
        self.detect_face, self.face_margin = cfg.detect_face, cfg.face_margin

    def prepare(self, data: bytes, name: str):
        """(face box or None, {name: input} or None when no face was found); UnreadableImage if undecodable."""
        image = decode_upload(data, name, self.channels, self.cfg.max_pixels)
        return photo_inputs(image, self.restored, self.detect_face, self.face_margin)

    def info(self) -> dict:
        return {"runs": {name: model.info() for name, model in self.models.items()}}


def onnx_model(cfg, restored, run, checkpoint):
    """The run's exported ONNX file on ONNX Runtime, after checking that its JSON describes this run's
    classes and input."""
    from cnnexp.export.runtime import OnnxModel

    path = exported_onnx(run, checkpoint, cfg.onnx)
    meta = json.loads(path.with_suffix(".json").read_text())
    expected = list(restored.pipeline.augmentation.out_shape)
    if meta.get("class_names") != restored.class_names or meta.get("input_shape") != expected:
        raise UserError(f"{path} was exported from another model (its classes or input shape differ from this "
                        f"run's); export this run again with `cnnexp export run={run}`")
    return OnnxModel(path, threads_per_worker(cfg))


def threads_per_worker(cfg) -> int:
    """device.threads, else the cores shared out between the workers (more intra-op threads than cores
    in all the workers together makes CPU serving slower, not faster)."""
    return cfg.device.threads or max(1, (os.cpu_count() or 1) // cfg.workers)


def run_metrics(run: Path | None) -> dict | None:
    """The run's metrics.json (its final numbers), if it has one."""
    path = run / "metrics.json" if run is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None
