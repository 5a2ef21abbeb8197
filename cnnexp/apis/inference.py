"""`cnnexp.open_run(path)`: a trained run as a `Predictor`: `predict()` on files, PIL images and numpy
arrays (what `cnnexp predict` prints), `evaluate()` on a split of its dataset (what `cnnexp eval` writes
and prints, ten-crop included). The settings are the predict and eval commands' own configs, composed
from the same override strings, so a Python call and a command give the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from cnnexp.utils.errors import DataError

if TYPE_CHECKING:
    from cnnexp.engine.assemble import Restored


def open_run(path: str | Path, device: str = "cpu", which: str = "best", checkpoint: str | Path | None = None,
             *overrides: str) -> "Predictor":
    """A train run folder (its `which` checkpoint, or `checkpoint`) or a checkpoint file, on `device`
    (cpu, cuda, auto); `overrides`: further predict keys (e.g. "resize=simple"). Raises RunError and
    ConfigError for a path or setting it cannot use."""
    from cnnexp.runner.app import check_composes
    from cnnexp.inference.open_run import open_run as restore

    run, file = (path, checkpoint) if Path(str(path)).expanduser().is_dir() else (None, path)
    run_settings = [f"device={device}", f"which={which}", *([f"run={quoted(run)}"] if run is not None else []),
                    *([f"checkpoint={quoted(file)}"] if file is not None else [])]
    cfg = check_composes("predict", [*run_settings, *overrides], check_without_images)
    restored = restore(cfg.run, cfg.checkpoint, cfg.which, cfg.device, resize=cfg.resize, probe=True)
    return Predictor(restored, cfg, run_settings)


def check_without_images(cfg) -> None:
    """The predict config's checks; its images are not in it (they are given to `predict()`)."""
    from cnnexp.schemas import typed

    settings = cfg.copy()
    settings.image = "<the images given to predict()>"
    typed(settings)


def quoted(value) -> str:
    """A path as one override value (Hydra reads commas and spaces as syntax otherwise)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class Predictor:
    """A trained run opened once: its model on the device, class names, config (`restored`)."""

    def __init__(self, restored: Restored, cfg, run_settings: list[str]):
        self.restored, self.cfg, self.run_settings = restored, cfg, run_settings

    @property
    def class_names(self) -> list:
        return list(self.restored.class_names)

    @property
    def config(self):
        """The run's training config."""
        return self.restored.config

    def predict(self, images, topk: int = 2, tencrop: bool = False, mirror: bool = True) -> list[list[dict]]:
        """The `topk` best guesses ({"label", "prob"}) for each image: a path (str or Path), a PIL image or
        a numpy array (H x W or H x W x C, uint8; other types are scaled as 16-bit files are), or a list
        of them. Images are brought to the run's size as `cnnexp predict` does."""
        from cnnexp.inference.guesses import class_probs, top_guesses
        from cnnexp.inference.scoring import require_crops

        if tencrop:
            require_crops(self.restored.pipeline, self.restored.image_shape)
        tensors = [self.tensor(image) for image in as_list(images)]
        import torch

        probs = class_probs(self.restored, torch.stack(tensors), tencrop, mirror)
        return top_guesses(probs, self.class_names, topk)

    def tensor(self, image):
        """One image -> the uint8 C x H x W tensor the model takes."""
        from cnnexp.inference.inputs import fit, load

        shape, resize = self.restored.image_shape, self.restored.resize
        if isinstance(image, (str, Path)):
            return load(Path(image).expanduser(), shape, resize, False, 0.0, self.cfg.max_pixels)[0]
        return fit(in_memory(image, shape[0]), tuple(shape[1:]), resize)

    def evaluate(self, split: str = "test", tencrop: bool = False, *overrides: str) -> dict:
        """What `cnnexp eval` does (`run=... split=... [--tencrop] <overrides>`): prints the report, writes
        it to <run>/eval/<split>[-tencrop] and returns eval.json's record."""
        from cnnexp.apis.evaluation import evaluate_run, report_folder
        from cnnexp.runner.app import check_composes
        from cnnexp.inference.open_run import dataset_overrides

        cfg = check_composes("eval", [*self.run_settings, f"split={split}", f"eval.tencrop={bool(tencrop)}",
                                      *overrides])
        dataset = dataset_overrides(cfg, list(overrides))
        return evaluate_run(cfg, report_folder(cfg), dataset, None if dataset else self.restored)


def as_list(images) -> list:
    """One image or a list/tuple of them (a 4-D array: a batch)."""
    import numpy as np

    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    return [images]


def in_memory(image, channels: int):
    """A PIL image or numpy array decoded as a file would be (upright, 8-bit, alpha composited, grey or RGB)."""
    import numpy as np
    from PIL import Image

    from cnnexp.data.images import eight_bit, eight_bit_array, in_mode, opaque, upright

    if isinstance(image, np.ndarray):
        array = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise DataError(f"an image array must be H x W, H x W x 1, 3 or 4; this one is {image.shape}")
        image = Image.fromarray(eight_bit_array(array))
    elif not isinstance(image, Image.Image):
        raise DataError(f"cannot read a {type(image).__name__} as an image; give a path, a PIL image or a numpy array")
    return in_mode(opaque(eight_bit(upright(image))), "L" if channels == 1 else "RGB")


__all__: Iterable[str] = ["Predictor", "open_run"]
