"""Training speed of cnnexp against a plain hand-written PyTorch loop, same model, data and batch size.

    python benchmarks/train_speed.py [--epochs 2] [--limit 20000] [--mnist ../shared/datasets/mnist]

Both train the deeplearning.net MNIST LeNet (nkerns [20,50], hidden 500, SGD lr 0.1, batch 500) in
this process, one after the other, and report training images per second (evaluation excluded).
The plain loop is what a tutorial writes: float tensors, a shuffling DataLoader, NCHW. A second plain
loop adds channels_last, to show how much of the gap is the memory format alone.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, TensorDataset

from cnnexp.cli import conf_dir
from cnnexp.data import create_dataset
from cnnexp.engine.loggers import ConsoleReporter
from cnnexp.engine.trainer import Trainer
from cnnexp.models import create_model, model_kwargs

ROOT = Path(__file__).resolve().parents[1]


def config(args):
    overrides = ["experiment=mnist_lenet", f"dataset.root={args.mnist}", f"dataset.limit={args.limit}",
                 f"trainer.epochs={args.epochs}", "trainer.early_stopping=none", "trainer.shuffle=true",
                 "device=cpu"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        return compose("train", overrides=overrides)


def time_cnnexp(cfg, data) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = Trainer(cfg, data, Path(run_dir), ConsoleReporter()).fit()
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
    seconds, images = 0.0, 0
    for _ in range(int(cfg.trainer.epochs)):
        start = time.perf_counter()
        for x, y in loader:
            x = x.contiguous(memory_format=fmt)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images += len(y)
        seconds += time.perf_counter() - start
    return images / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=20000, help="training images used (of 50,000)")
    parser.add_argument("--mnist", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    args = parser.parse_args()
    cfg = config(args)
    data = create_dataset(cfg.dataset, 0).limit(args.limit)
    print(f"MNIST LeNet, {len(data.splits['train'])} images x {args.epochs} epochs, batch "
          f"{cfg.trainer.batch_size}, {torch.get_num_threads()} threads")
    plain = time_plain_loop(cfg, data, channels_last=False)
    plain_cl = time_plain_loop(cfg, data, channels_last=True)
    ours = time_cnnexp(cfg, data)
    print(f"plain loop (NCHW, DataLoader)      {plain:8.0f} img/s")
    print(f"plain loop + channels_last         {plain_cl:8.0f} img/s")
    print(f"cnnexp train                       {ours:8.0f} img/s")
    print(f"ratio cnnexp / plain loop          {ours / plain:8.2f}x")
    print(f"ratio cnnexp / plain channels_last {ours / plain_cl:8.2f}x")


if __name__ == "__main__":
    main()
