"""Training speed of cnnexp against a plain hand-written PyTorch loop, same model, data and batch size.

    python benchmarks/train_speed.py [--rounds 3] [--limit 20000] [--mnist ../shared/datasets/mnist]

Both train the deeplearning.net MNIST LeNet (nkerns [20,50], hidden 500, SGD lr 0.1, batch 500) in
this process for one epoch per round, taking turns round by round so that a busy machine slows all
of them alike, and report the median training images per second (evaluation excluded).
The plain loop is what a tutorial writes: float tensors, a shuffling DataLoader, NCHW. A second plain
loop adds channels_last, to show how much of the gap is the memory format alone.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from cnnexp.config.compose import compose_config
from cnnexp.data import create_dataset
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
        metrics = Trainer(cfg, data, Path(run_dir), ConsoleReporter(Console(quiet=True))).fit()
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="epochs each loop trains, taking turns")
    parser.add_argument("--limit", type=int, default=20000, help="training images used (of 50,000)")
    parser.add_argument("--mnist", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
