"""Training speed of cnnexp against a plain hand-written PyTorch loop, same model, data and batch size.

    python benchmarks/train_speed.py [--rounds 3] [--limit 20000] [--mnist ../shared/datasets/mnist]

Both train the deeplearning.net MNIST LeNet (nkerns [20,50], hidden 500, SGD lr 0.1, batch 500) in
this process for one epoch per round, taking turns round by round so that a busy machine slows all
of them alike, and report the median training images per second (evaluation excluded).
The plain loop is what a tutorial writes: float tensors, a shuffling DataLoader, NCHW. A second plain
loop adds channels_last, to show how much of the gap is the memory format alone.

    python benchmarks/train_speed.py --parts table [--models lenet,alexnet_bn,resnet18,vgg16]
                                     [--switches fp32,bf16,compile] [--steps 3] [--rounds 2]

The switch table: for each model and each switch (fp32; bf16 = autocast to bfloat16 around the
forward pass and loss; compile = torch.compile of the model), cnnexp's Trainer with
`device.precision` / `device.compile` against the same plain loop with the same switch (an autocast
context / torch.compile on the plain side too). LeNet trains on MNIST (batch 500), AlexNet-BN and
ResNet18 on dogs-vs-cats photos at 227x227, VGG16 at 224x224 (small batches). Each (model, switch)
builds both sides once and then alternates one epoch of `steps` steps each, cnnexp then plain; the
first epoch of each (warm-up, and compilation for `compile`) is left out, the median of `rounds`
timed epochs is shown with their ratio.

The bf16 line (--parts bf16): for each model, fp32 and bf16-autocast training steps alternating on
one batch, the ratio of their median step times: whether bfloat16 pays on this machine.

The start-up line (--parts startup): a real `cnnexp train` process (MNIST LeNet), the seconds from
the process's start to its first training step, and of those, from Trainer construction to it.
"""

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from cnnexp.runner.compose import compose_config
from cnnexp.data import create_dataset
from cnnexp.data.image_data import ImageData, Split
from cnnexp.engine.assemble import assemble_training
from cnnexp.engine.loggers import ConsoleReporter
from cnnexp.engine.trainer import Trainer
from cnnexp.models import create_model, model_kwargs

ROOT = Path(__file__).resolve().parents[1]


def config(args):
    overrides = ["experiment=mnist_lenet", f"dataset.root={args.mnist}", f"dataset.limit={args.limit}",
                 "trainer.epochs=1", "trainer.early_stopping=none", "trainer.shuffle=true",
                 "device=cpu"]
    return compose_config("train", overrides)


def time_cnnexp(cfg, data) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = Trainer(assemble_training(cfg, data), Path(run_dir), ConsoleReporter(Console(quiet=True))).fit()
    return metrics["images_per_second"]


def time_plain_loop(cfg, data, channels_last: bool) -> float:
    torch.manual_seed(0)
    train = data.splits["train"]
    dataset = TensorDataset(train.images.float() / 255.0, train.labels)
    loader = DataLoader(dataset, batch_size=int(cfg.trainer.batch_size), shuffle=True)
    model = create_model("lenet", (1, 28, 28), 10, **model_kwargs(cfg.model))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(cfg.optimizer.lr))
    start, images = time.perf_counter(), 0
    for x, y in loader:
        x = x.contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images += len(y)
    seconds = time.perf_counter() - start
    return images / seconds


def mnist_comparison(args):
    """The first table: one epoch rounds of the MNIST LeNet, cnnexp against two plain loops."""
    cfg = config(args)
    data = create_dataset(cfg.dataset, 0).limit(args.limit)
    print(f"MNIST LeNet, {len(data.splits['train'])} images, {args.rounds} rounds of one epoch, batch "
          f"{cfg.trainer.batch_size}, {torch.get_num_threads()} threads")
    loops = {
        "plain loop (NCHW, DataLoader)": lambda: time_plain_loop(cfg, data, channels_last=False),
        "plain loop + channels_last": lambda: time_plain_loop(cfg, data, channels_last=True),
        "cnnexp train": lambda: time_cnnexp(cfg, data),
    }
    speeds = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            speeds[name].append(loop())
    median = {name: statistics.median(values) for name, values in speeds.items()}
    for name, value in median.items():
        print(f"{name:<34} {value:8.0f} img/s   (rounds: {', '.join(f'{v:.0f}' for v in speeds[name])})")
    ours = median["cnnexp train"]
    print(f"ratio cnnexp / plain loop          {ours / median['plain loop (NCHW, DataLoader)']:8.2f}x")
    print(f"ratio cnnexp / plain channels_last {ours / median['plain loop + channels_last']:8.2f}x")


# ---- the switch table ------------------------------------------------------------------------------
# model -> (input C x H x W, batch, data): "mnist" or "photos" (dogs-vs-cats, resized to the input)
TABLE_MODELS = {
    "lenet": ((1, 28, 28), 500, "mnist"),
    "alexnet_bn": ((3, 227, 227), 8, "photos"),
    "resnet18": ((3, 227, 227), 8, "photos"),
    "vgg16": ((3, 224, 224), 4, "photos"),
    "levi_hassner": ((3, 227, 227), 50, "photos"),  # the age/gender network at the paper's batch
}
SWITCHES = {"fp32": ("fp32", False), "bf16": ("bf16", False), "fp16": ("fp16", False), "compile": ("fp32", True)}


def photos(folder: Path, in_shape, n: int) -> ImageData:
    """n dogs-vs-cats photos (cats and dogs alternating), resized to the input size, as uint8."""
    from PIL import Image

    c, h, w = in_shape
    files = [folder / kind / f"{kind[:-1]}.{i}.jpg" for i in range(1, n // 2 + 2) for kind in ("cats", "dogs")][:n]
    arrays = [torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((w, h)))) for f in files]
    images = torch.stack(arrays).permute(0, 3, 1, 2).contiguous()
    split = Split(images, torch.arange(n) % 2)
    return ImageData({"train": split, "val": split, "test": split}, ["cat", "dog"])


def table_data(args, kind: str, in_shape, n: int) -> ImageData:
    if kind == "photos":
        return photos(Path(args.photos), in_shape, n)
    data = create_dataset(compose_config("train", ["experiment=mnist_lenet", f"dataset.root={args.mnist}"]).dataset, 0)
    train = data.splits["train"].limit(n)
    return ImageData({"train": train, "val": train, "test": train}, data.class_names)


def table_config(name: str, batch: int, switch: str, args):
    precision, compiled = SWITCHES[switch]
    dataset = ["experiment=mnist_lenet", f"dataset.root={args.mnist}"] if name == "lenet" else [f"model={name}"]
    return compose_config("train", [*dataset, f"device={args.device}", "optimizer=sgd", "optimizer.lr=0.001",
                                    f"trainer.epochs={args.rounds + 1}", "trainer.early_stopping=none",
                                    "trainer.shuffle=true", f"trainer.batch_size={batch}",
                                    "trainer.checkpoint_every=0", "dataset.normalize=scale",
                                    f"device.precision={precision}", f"device.compile={str(compiled).lower()}"])


class PlainLoop:
    """The tutorial loop (float tensors, a shuffling DataLoader, NCHW, SGD) with the same switch:
    an autocast context around forward and loss for bf16 and fp16 (fp16 with a gradient scaler),
    torch.compile of the model for compile. On a GPU the data lies on the GPU, as cnnexp's does."""

    def __init__(self, cfg, data: ImageData, switch: str, device: torch.device):
        torch.manual_seed(0)
        train = data.splits["train"]
        self.device = device
        self.dataset = TensorDataset(train.images.to(device).float() / 255.0, train.labels.to(device))
        self.batch = int(cfg.trainer.batch_size)
        model = create_model(cfg.model.name, data.image_shape, data.num_classes, **model_kwargs(cfg.model))
        self.model = model.to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=float(cfg.optimizer.lr))
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(switch)
        self.autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        self.scaler = torch.amp.GradScaler(device.type) if switch == "fp16" else None
        self.forward = torch.compile(self.model) if switch == "compile" else self.model

    def epoch(self) -> float:
        start, images = time.perf_counter(), 0
        for x, y in DataLoader(self.dataset, batch_size=self.batch, shuffle=True):
            with self.autocast:
                loss = F.cross_entropy(self.forward(x), y)
            self.optimizer.zero_grad()
            if self.scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            images += len(y)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return images / (time.perf_counter() - start)


def measure_switch(cfg, data: ImageData, switch: str) -> dict:
    """Epoch speeds of both sides, alternating: cnnexp's epoch, then (from its end-of-epoch hook) the
    plain loop's. One Trainer and one plain model for all epochs, so that compilation happens once."""
    speeds = {"cnnexp": [], "plain": []}

    def after_epoch(epoch, images_per_second):
        speeds["cnnexp"].append(images_per_second)
        speeds["plain"].append(plain.epoch())

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(assemble_training(cfg, data), Path(run_dir), ConsoleReporter(Console(quiet=True)))
        plain = PlainLoop(cfg, data, switch, trainer.device)
        trainer.validate = after_epoch  # called once an epoch with that epoch's images/s
        trainer.save = lambda which: None
        trainer.fit()
    return {side: statistics.median(values[1:]) for side, values in speeds.items()}  # [0]: warm-up


def switch_table(args):
    names, switches = args.models.split(","), args.switches.split(",")
    print(f"\nswitch table on {args.device}: {args.steps} steps an epoch, median of {args.rounds} epochs after a warm-up epoch, "
          f"{torch.get_num_threads()} threads, images/s; ratio = cnnexp / plain loop with the same switch")
    print(f"{'model':<11} {'input':>10} {'batch':>5}  " + "  ".join(f"{s + ' cnnexp':>14} {'plain':>8} {'ratio':>6}"
                                                             for s in switches))
    for name in names:
        in_shape, batch, kind = TABLE_MODELS[name]
        data = table_data(args, kind, in_shape, batch * args.steps)
        speeds = {switch: measure_switch(table_config(name, batch, switch, args), data, switch) for switch in switches}
        cells = [f"{v['cnnexp']:14.1f} {v['plain']:8.1f} {v['cnnexp'] / v['plain']:5.2f}x" for v in speeds.values()]
        print(f"{name:<11} {'x'.join(map(str, in_shape)):>10} {batch:>5}  " + "  ".join(cells), flush=True)
        if "fp32" in speeds:  # what each switch does to each side (cells measured one after the other)
            gains = [f"{switch} / fp32: cnnexp {v['cnnexp'] / speeds['fp32']['cnnexp']:.2f}x, plain "
                     f"{v['plain'] / speeds['fp32']['plain']:.2f}x" for switch, v in speeds.items() if switch != "fp32"]
            print(f"{'':<11} " + "; ".join(gains), flush=True)


# ---- bf16 against fp32, step by step ------------------------------------------------------------
def bf16_gain(args):
    """Does bfloat16 autocast pay on this machine? One model, one batch, alternating an fp32 and a bf16
    training step (same weights, channels_last, SGD), so that load changes hit both alike; the ratio
    of the median step times. Answers the question the cells of the switch table (measured one after
    the other) answer only on a quiet machine."""
    print(f"\nbf16 autocast / fp32 on {args.device}, {args.steps} alternating steps each after one warm-up, "
          f"{torch.get_num_threads()} threads: median step time ratio (above 1: bf16 faster)")
    device = torch.device(args.device)
    for name in args.models.split(","):
        in_shape, batch, _ = TABLE_MODELS[name]
        cfg = table_config(name, batch, "fp32", args)
        model = create_model(cfg.model.name, in_shape, 10, **model_kwargs(cfg.model))
        model = model.to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
        x = torch.rand(batch, *in_shape, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), device=device)
        times = {"fp32": [], "bf16": []}
        for step in range(args.steps + 1):
            for precision in times:
                start = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss.item()
                if step:
                    times[precision].append(time.perf_counter() - start)
        fp32, bf16 = (statistics.median(times[k]) for k in ("fp32", "bf16"))
        print(f"{name:<11} {'x'.join(map(str, in_shape)):>10} batch {batch:>3}: fp32 {batch / fp32:8.1f} img/s, "
              f"bf16 {batch / bf16:8.1f} img/s, bf16 / fp32 {fp32 / bf16:5.2f}x", flush=True)


# ---- start-up ---------------------------------------------------------------------------------------
STARTUP_PROBE = """
import os, sys, time
ticks = os.sysconf("SC_CLK_TCK")
boot = next(float(l.split()[1]) for l in open("/proc/stat") if l.startswith("btime"))
process_start = boot + int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
from cnnexp.engine.trainer import Trainer
marks = {}
construct, step = Trainer.__init__, Trainer.train_step
def timed_init(self, *a, **k):
    marks["trainer"] = time.time()
    construct(self, *a, **k)
def first_step(self, *a, **k):
    now = time.time()
    print(f"{now - process_start:.2f} {now - marks['trainer']:.2f}", flush=True)
    os._exit(0)
Trainer.__init__, Trainer.train_step = timed_init, first_step
from cnnexp.cli import main
main(sys.argv[1:])
"""


def startup(args):
    """Seconds from a `cnnexp train` process's start to its first step (median of args.rounds runs)."""
    command = ["experiment=mnist_lenet", f"dataset.root={args.mnist}", "device=cpu"]
    totals, trainers = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, "train", *command, f"hydra.run.dir={folder}/run"],
                                 capture_output=True, text=True, check=True, cwd=folder,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
        totals.append(float(out[-2]))
        trainers.append(float(out[-1]))
    print(f"\nstart-up of `cnnexp train {' '.join(command)}`: {statistics.median(totals):.2f} s from process start "
          f"to the first training step, of which {statistics.median(trainers):.2f} s from Trainer construction "
          f"(MNIST loaded) (median of {args.rounds} runs: {', '.join(f'{t:.2f}' for t in totals)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="mnist,table,startup", help="comma-separated: mnist, table, bf16, startup")
    parser.add_argument("--rounds", type=int, default=3, help="epochs each loop trains, taking turns")
    parser.add_argument("--limit", type=int, default=20000, help="training images used (of 50,000)")
    parser.add_argument("--mnist", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--photos", default=str(ROOT.parent / "shared" / "datasets" / "cats_and_dogs_small" / "train"))
    parser.add_argument("--models", default=",".join(TABLE_MODELS), help="switch table: comma-separated models")
    parser.add_argument("--switches", default="fp32,bf16,compile", help="switch table: fp32, bf16, fp16 (cuda), compile")
    parser.add_argument("--device", default="cpu", help="switch table: cpu or cuda (the data on the GPU)")
    parser.add_argument("--steps", type=int, default=3, help="switch table: training steps an epoch")
    args = parser.parse_args()
    parts = args.parts.split(",")
    wall = time.perf_counter()
    if "mnist" in parts:
        mnist_comparison(args)
    if "table" in parts:
        switch_table(args)
    if "bf16" in parts:
        bf16_gain(args)
    if "startup" in parts:
        startup(args)
    print(f"wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
