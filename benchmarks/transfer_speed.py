"""The transfer recipes' speed: cnnexp against a plain torchvision ImageFolder + DataLoader loop with
the same timm model (EfficientNet-Lite0, its ImageNet weights from the pip package), same batch.

    python benchmarks/transfer_speed.py [--root ../shared/datasets/cats_and_dogs] [--rounds 1] [--batch 32]
                                        [--parts features,finetune]

- features: `cnnexp features experiment=dogs_vs_cats_lite0_probe splits=[train]` (the whole command,
  in this process: reading the folder, building the model, the features of the 1,800 training photos,
  the HDF5 file) against the tutorial's loop (ImageFolder with Resize(224) + CenterCrop(224) + ToTensor +
  Normalize(0.5, 0.5), a DataLoader with 2 workers, the model in eval mode, the features kept in memory).
- finetune: one training epoch of experiment=dogs_vs_cats_lite0_finetune (cnnexp's Trainer, training
  images per second; the photos are decoded once before, timed and printed apart) against the
  tutorial's loop for the same job (Resize(256) + RandomCrop(224) + flip, the same trainable layers with
  the frozen batch norm in eval mode, Adam with the head at 10x, decoding in 2 DataLoader workers).

The two sides take turns round by round in this one process, so that a busy machine slows both alike;
each line shows the median images per second and the ratio cnnexp / plain (above 1: cnnexp is faster).
"""

import argparse
import statistics
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from cnnexp.cli import main
from cnnexp.runner.compose import compose_config
from cnnexp.data import create_dataset
from cnnexp.data.image_data import ImageData
from cnnexp.engine.assemble import assemble_training
from cnnexp.engine.loggers import ConsoleReporter
from cnnexp.engine.trainer import Trainer
from cnnexp.models.timm_models import LITE0_IMAGENET, lite0_to_timm, packaged_file, timm_library
from cnnexp.models.weights import torch_load

ROOT = Path(__file__).resolve().parents[1]
TRAINABLE = ("blocks.5", "blocks.6", "conv_head", "bn2", "classifier")  # as dogs_vs_cats_lite0_finetune
NORMALIZE = transforms.Normalize(LITE0_IMAGENET.mean, LITE0_IMAGENET.std)


def quietly(fn, *args):
    with redirect_stdout(StringIO()), redirect_stderr(StringIO()):
        return fn(*args)


# ---- the plain side: what a tutorial writes --------------------------------------------------------
def plain_model(num_classes: int | None) -> torch.nn.Module:
    """timm's tf_efficientnet_lite0 with the package's ImageNet weights (the head dropped when
    `num_classes` is given)."""
    path = packaged_file(LITE0_IMAGENET)
    state = lite0_to_timm(torch_load(path))
    if num_classes is None:
        model = timm_library().create_model("tf_efficientnet_lite0", num_classes=1000)
        model.load_state_dict(state)
        return model
    model = timm_library().create_model("tf_efficientnet_lite0", num_classes=num_classes)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, strict=False)
    return model


def plain_features(root: Path, batch: int) -> float:
    model = plain_model(None).eval()
    tf = transforms.Compose([transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor(), NORMALIZE])
    loader = DataLoader(datasets.ImageFolder(root / "train", tf), batch_size=batch, num_workers=2)
    start, features = time.perf_counter(), []
    with torch.inference_mode():
        for x, _ in loader:
            features.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return sum(len(f) for f in features) / (time.perf_counter() - start)


def plain_finetune_epoch(root: Path, batch: int, lr: float, head_mult: float) -> float:
    torch.manual_seed(0)
    model = plain_model(2)
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(TRAINABLE)
    head = [p for n, p in model.named_parameters() if n.startswith("classifier")]
    base = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("classifier")]
    optimizer = torch.optim.Adam([{"params": base}, {"params": head, "lr": lr * head_mult}], lr=lr)
    tf = transforms.Compose([transforms.Resize(256), transforms.RandomCrop(224), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), NORMALIZE])
    loader = DataLoader(datasets.ImageFolder(root / "train", tf), batch_size=batch, shuffle=True, num_workers=2)
    model.train()
    for name, module in model.named_modules():  # frozen batch norm keeps ImageNet's statistics
        if isinstance(module, torch.nn.BatchNorm2d) and not name.startswith(TRAINABLE):
            module.eval()
    start, images = time.perf_counter(), 0
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images += len(y)
    return images / (time.perf_counter() - start)


# ---- the cnnexp side ---------------------------------------------------------------------------------
def cnnexp_features(root: Path, batch: int, out: Path) -> float:
    start = time.perf_counter()
    code = quietly(main, ["features", "experiment=dogs_vs_cats_lite0_probe", f"dataset.root={root}",
                          "splits=[train]", f"batch_size={batch}", f"out={out}", "overwrite=true"])
    assert code == 0, "cnnexp features failed"
    return len(list((root / "train").glob("*/*"))) / (time.perf_counter() - start)


def finetune_config(root: Path, batch: int):
    return compose_config("train", ["experiment=dogs_vs_cats_lite0_finetune", f"dataset.root={root}",
                                    "trainer.epochs=1", f"trainer.batch_size={batch}"])


def cnnexp_finetune_epoch(cfg, data: ImageData) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = Trainer(assemble_training(cfg, data), Path(run_dir), ConsoleReporter(Console(quiet=True))).fit()
    return metrics["images_per_second"]


def train_only(data: ImageData, batch: int) -> ImageData:
    """The training photos, with one batch of them as val/test (evaluation is not what is timed)."""
    train = data.splits["train"]
    return ImageData({"train": train, "val": train.limit(batch), "test": train.limit(batch)}, data.class_names)


# ---- the comparison ------------------------------------------------------------------------------------
def report(title: str, speeds: dict) -> None:
    median = {name: statistics.median(values) for name, values in speeds.items()}
    print(title)
    for name, values in speeds.items():
        print(f"  {name:<44} {median[name]:7.1f} img/s   (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    ours, plain = median
    print(f"  ratio cnnexp / plain                         {median[ours] / median[plain]:7.2f}x")


def features_part(args) -> None:
    speeds = {"cnnexp features (whole command)": [], "plain ImageFolder + DataLoader loop": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            speeds["cnnexp features (whole command)"].append(cnnexp_features(args.root, args.batch, Path(folder) / "f.h5"))
            speeds["plain ImageFolder + DataLoader loop"].append(plain_features(args.root, args.batch))
    report(f"features of the {args.root.name} training photos, batch {args.batch}", speeds)


def finetune_part(args) -> None:
    cfg = finetune_config(args.root, args.batch)
    start = time.perf_counter()
    data = quietly(create_dataset, cfg.dataset, 0)
    decode_s = time.perf_counter() - start
    train = train_only(data, args.batch)
    speeds = {"cnnexp train (one epoch)": [], "plain ImageFolder + DataLoader loop": []}
    for _ in range(args.rounds):
        speeds["cnnexp train (one epoch)"].append(cnnexp_finetune_epoch(cfg, train))
        speeds["plain ImageFolder + DataLoader loop"].append(
            plain_finetune_epoch(args.root, args.batch, float(cfg.optimizer.lr), float(cfg.optimizer.head_lr_mult)))
    n = len(train.splits["train"])
    report(f"one fine-tuning epoch (dogs_vs_cats_lite0_finetune), {n} photos, batch {args.batch}", speeds)
    cnnexp_s = n / statistics.median(speeds["cnnexp train (one epoch)"]) + decode_s
    plain_s = n / statistics.median(speeds["plain ImageFolder + DataLoader loop"])
    print(f"  cnnexp decodes the {sum(len(s) for s in data.splits.values())} photos of all splits once: {decode_s:.1f} s; "
          f"one epoch with that included: {cnnexp_s:.0f} s against {plain_s:.0f} s ({plain_s / cnnexp_s:.2f}x)")


def main_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "datasets" / "cats_and_dogs")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--parts", default="features,finetune")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = main_args()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for part in arguments.parts.split(","):
        {"features": features_part, "finetune": finetune_part}[part](arguments)
