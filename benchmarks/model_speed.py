"""Training and inference speed of the model zoo: cnnexp against a plain hand-written PyTorch loop,
same model, same batch, same input, each model at its tutorial's input size.

    python benchmarks/model_speed.py [--steps 8] [--rounds 3] [--threads N] [--models levi_hassner,resnet18]

For each model both sides train `steps` SGD steps (lr 0.001, no momentum) of the same batch size on the
same random uint8 images (2 classes) and then run inference over them, taking turns round by round so
that a busy machine slows both alike; the median images/s of the rounds is reported, after one untimed
warm-up round of each side. Each round builds its model afresh on both sides.
- cnnexp: `cnnexp train`'s Trainer and its own images/s (uint8 images held as one tensor, batched by
  index, scaled per batch, channels_last as device=cpu configures), with validation and checkpoints
  switched off (they are outside its timed loop anyway); TensorBoard and its input grid are on, as in a
  run (the progress bar is off: not a terminal). Inference through engine.evaluation.evaluate.
- plain: what a tutorial writes: float tensors scaled once (not timed), a shuffling DataLoader, NCHW,
  the same SGD; inference in a `torch.no_grad()` loop over a DataLoader.
Each side's first step of a round includes its first-call allocations; more steps dilute that alike.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from cnnexp.runner.compose import compose_config
from cnnexp.data.image_data import ImageData, Split
from cnnexp.engine.evaluation import evaluate
from cnnexp.engine.assemble import assemble_training
from cnnexp.engine.loggers import ConsoleReporter
from cnnexp.engine.trainer import Trainer
from cnnexp.models import create_model, model_kwargs

# model -> (tutorial input C x H x W, batch size)
MODELS = {
    "levi_hassner": ((3, 227, 227), 16),
    "alexnet_bn": ((3, 227, 227), 16),
    "face_cnn": ((3, 70, 50), 32),
    "vgg16": ((3, 256, 256), 4),
    "vgg16_bn": ((3, 224, 224), 4),
    "resnet18": ((3, 224, 224), 8),
    "resnet50": ((3, 224, 224), 4),
}


def synthetic_data(in_shape, n: int) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *in_shape), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % 2
    split = Split(images, labels)
    return ImageData({"train": split, "val": split, "test": split}, ["a", "b"])


def config(name: str, batch: int, threads: int | None):
    return compose_config("train", [f"model={name}", "device=cpu", "optimizer=sgd", "optimizer.lr=0.001",
                                    "trainer.epochs=1", f"trainer.batch_size={batch}",
                                    f"trainer.eval_batch_size={batch}", "dataset.normalize=scale",
                                    f"device.threads={threads or 'null'}"])


def cnnexp_side(cfg, data: ImageData) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(assemble_training(cfg, data), Path(run_dir), ConsoleReporter(Console(quiet=True)))
        trainer.validate = lambda epoch, ips: None  # outside the timed loop: skipped to save wall time
        trainer.save = lambda which: None
        train_ips = trainer.fit()["images_per_second"]
        split = trainer.data.split("train")
        start = time.perf_counter()
        evaluate(trainer.model, split, trainer.pipeline, trainer.eval_batch_size)
        return train_ips, len(split) / (time.perf_counter() - start)


def plain_side(cfg, data: ImageData, in_shape) -> tuple[float, float]:
    torch.manual_seed(0)
    train = data.splits["train"]
    dataset = TensorDataset(train.images.float() / 255.0, train.labels)
    batch = int(cfg.trainer.batch_size)
    model = create_model(cfg.model.name, in_shape, 2, **model_kwargs(cfg.model))
    optimizer = torch.optim.SGD(model.parameters(), lr=float(cfg.optimizer.lr))
    model.train()
    start, images = time.perf_counter(), 0
    for x, y in DataLoader(dataset, batch_size=batch, shuffle=True):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images += len(y)
    train_ips = images / (time.perf_counter() - start)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for x, _ in DataLoader(dataset, batch_size=batch):
            model(x)
    return train_ips, len(dataset) / (time.perf_counter() - start)


def measure(name: str, steps: int, rounds: int, threads: int | None) -> dict:
    in_shape, batch = MODELS[name]
    cfg = config(name, batch, threads)
    data = synthetic_data(in_shape, batch * steps)
    sides = {"cnnexp": lambda: cnnexp_side(cfg, data), "plain": lambda: plain_side(cfg, data, in_shape)}
    for side in sides.values():  # warm-up: first-call allocations and kernel selection
        side()
    results = {key: [] for key in sides}
    for _ in range(rounds):
        for key, side in sides.items():
            results[key].append(side())
    return {key: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
            for key, rs in results.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per round (one batch each)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side, taking turns")
    parser.add_argument("--threads", type=int, help="torch threads for both sides (default: all cores)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    args = parser.parse_args()
    names = args.models.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.steps} steps x {args.rounds} rounds per side (after a warm-up round), {torch.get_num_threads()} "
          f"threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; images/s, median of rounds; "
          "format: cnnexp's memory format (plain: NCHW)")
    header = (f"{'model':<13} {'input':>11} {'batch':>5} {'format':>6}  {'train cnnexp':>12} {'plain':>8} {'ratio':>6}  "
              f"{'infer cnnexp':>12} {'plain':>8} {'ratio':>6}")
    print(header)
    wall = time.perf_counter()
    for name in names:
        in_shape, batch = MODELS[name]
        speed = measure(name, args.steps, args.rounds, args.threads)
        (train_ours, infer_ours), (train_plain, infer_plain) = speed["cnnexp"], speed["plain"]
        layout = "NHWC" if config(name, batch, args.threads).device.channels_last else "NCHW"
        print(f"{name:<13} {'x'.join(map(str, in_shape)):>11} {batch:>5} {layout:>6}  {train_ours:12.1f} "
              f"{train_plain:8.1f} {train_ours / train_plain:5.2f}x  {infer_ours:12.1f} {infer_plain:8.1f} "
              f"{infer_ours / infer_plain:5.2f}x", flush=True)
    print(f"wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
