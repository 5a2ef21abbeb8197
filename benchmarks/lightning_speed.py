"""cnnexp against PyTorch Lightning, whole processes, as a user runs each: the tutorial's MNIST LeNet
(experiment=mnist_lenet: 50,000 training images, batch 500, SGD lr 0.1, no shuffling) for --epochs
epochs, validated after every epoch and the test split scored, with each tool's default logging
(TensorBoard) and checkpoints.

    pip install lightning "torch==2.14.1" "torchvision==0.29.1"    # Lightning, torch kept at its pin
    python benchmarks/lightning_speed.py --rounds 3

The Lightning side is the script a Lightning user writes: a LightningModule around the same LeNet
(cnnexp's, same init), MNIST read with torchvision as float tensors in a TensorDataset (no per-image
PIL decoding), `Trainer(max_epochs=..., accelerator="cpu")` with its defaults, then `trainer.test`.
Each round runs both as fresh processes, taking turns (cnnexp first in odd rounds); printed: each
side's median wall and CPU seconds (child processes included), its peak memory, and the ratio
Lightning / cnnexp of each round: min, median, max (above 1.00: cnnexp is faster).
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from compare import DATASETS, ROOT, JobFailed, Side, timed

MEASURES = ("wall s", "CPU s", "peak MB")


def lightning_run(args) -> None:
    """The Lightning user's script (run in its own process by the benchmark)."""
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset
    from torchvision.datasets import MNIST

    from cnnexp.models import create_model

    class LitLeNet(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = create_model("lenet", (1, 28, 28), 10, nkerns=[20, 50], hidden=500, activation="tanh",
                                      init="theano")

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self._score(batch, "val")

        def test_step(self, batch, batch_idx):
            self._score(batch, "test")

        def _score(self, batch, split):
            x, y = batch
            logits = self(x)
            self.log(f"{split}_loss", F.cross_entropy(logits, y))
            self.log(f"{split}_error", (logits.argmax(1) != y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def tensors(train: bool, part: slice) -> TensorDataset:
        mnist = MNIST(str(args.mnist), train=train, download=False)
        return TensorDataset(mnist.data[part].unsqueeze(1).float() / 255.0, mnist.targets[part])

    def loader(dataset: TensorDataset) -> DataLoader:
        return DataLoader(dataset, batch_size=500, shuffle=False)

    L.seed_everything(1)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, default_root_dir=args.out)
    module = LitLeNet()
    trainer.fit(module, loader(tensors(True, slice(0, 50000))), loader(tensors(True, slice(50000, 60000))))
    trainer.test(module, loader(tensors(False, slice(None))))


def round_of(args, scratch: Path, lightning_first: bool) -> dict:
    side = Side("this checkout", "HEAD", ROOT)
    runs = {
        "cnnexp": ["-m", "cnnexp", "train", "experiment=mnist_lenet", f"dataset.root={args.mnist}",
                   f"trainer.epochs={args.epochs}", "seed=1", "device=cpu",
                   f"hydra.run.dir={tempfile.mkdtemp(dir=scratch)}/run"],
        "Lightning": [__file__, "--lightning-run", f"--mnist={args.mnist}", f"--epochs={args.epochs}",
                      f"--out={tempfile.mkdtemp(dir=scratch)}"],
    }
    order = ["Lightning", "cnnexp"] if lightning_first else ["cnnexp", "Lightning"]
    return {name: timed(side, runs[name], scratch) for name in order}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--mnist", type=Path, default=DATASETS / "mnist")
    parser.add_argument("--lightning-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lightning_run:
        lightning_run(args)
        return 0
    try:
        import lightning  # noqa: F401
    except ImportError:
        sys.stderr.write('error: this benchmark needs Lightning: pip install lightning "torch==2.14.1" '
                         '"torchvision==0.29.1"\n')
        return 2
    print(f"MNIST LeNet, {args.epochs} epochs of 50,000 images, {args.rounds} rounds, whole processes")
    results = {"cnnexp": {m: [] for m in MEASURES}, "Lightning": {m: [] for m in MEASURES}}
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.rounds):
            try:
                measured = round_of(args, Path(scratch), lightning_first=i % 2 == 1)
            except JobFailed as exc:
                sys.stderr.write(f"error: {exc}\n")
                return 1
            for name, values in measured.items():
                for m in MEASURES:
                    results[name][m].append(values[m])
    print(f"{'measure':<10} {'cnnexp':>9} {'Lightning':>10}   Lightning / cnnexp: min median max")
    for m in MEASURES:
        ours, theirs = results["cnnexp"][m], results["Lightning"][m]
        ratios = [t / o for t, o in zip(theirs, ours)]
        print(f"{m:<10} {statistics.median(ours):9.2f} {statistics.median(theirs):10.2f}   "
              f"{min(ratios):5.2f} {statistics.median(ratios):6.2f} {max(ratios):5.2f}   "
              f"({', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
