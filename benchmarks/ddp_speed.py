"""Data-parallel training on this machine's CPUs: one `cnnexp train` process against two started by
torchrun (Gloo), the same job and global batch, and the step loop reading its loss every step
against every `trainer.log_every` steps.

    python benchmarks/ddp_speed.py [--rounds 2] [--limit 10000] [--epochs 1] [--batch 500]

The job is the MNIST LeNet tutorial (batch 500, no augmentation) on the first `limit` training
images. The sides take turns round by round so a busy machine slows all alike; each line reports
the median over rounds of the command's wall time (process start, data load and Gloo set-up
included) and of the training loop's own images/s (metrics.json), with ratios to the 1-process run.
- 1 process, device.threads=N (all N cores in one process's intra-op threads)
- 2 processes x device.threads=N/2 (torchrun --nproc_per_node=2: DDP, each half of every batch)
- 1 process, device.threads=N/2 (what one of those processes would do alone)
- 1 process, log_every=1 (reads the loss after every step, as cnnexp did before log_every)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


def job(limit: int, epochs: int, batch: int, threads: int) -> list[str]:
    return ["train", "experiment=mnist_lenet", f"dataset.root={MNIST}", "dataset.download=false",
            f"dataset.limit={limit}", f"trainer.epochs={epochs}", f"trainer.batch_size={batch}",
            "trainer.early_stopping=none", "device=cpu", f"device.threads={threads}"]


def run(launcher: list[str], args: list[str], threads: int, run_dir: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    proc = subprocess.run([*launcher, "-m", "cnnexp", *args, f"hydra.run.dir={run_dir}"], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return wall, json.loads((run_dir / "metrics.json").read_text())["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500)
    opts = parser.parse_args()
    cores = os.cpu_count() or 2
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2"]
    half = max(cores // 2, 1)
    one = job(opts.limit, opts.epochs, opts.batch, cores)
    sides = {  # name -> (launcher, arguments, threads a process)
        f"1 process x {cores} threads": ([sys.executable], one, cores),
        f"2 processes x {half} threads": (torchrun, job(opts.limit, opts.epochs, opts.batch, half), half),
        f"1 process x {half} threads": ([sys.executable], job(opts.limit, opts.epochs, opts.batch, half), half),
        f"1 process x {cores} threads, log_every=1": ([sys.executable], [*one, "trainer.log_every=1"], cores),
    }
    results = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(opts.rounds):
            for i, (name, (launcher, args, threads)) in enumerate(sides.items()):
                results[name].append(run(launcher, args, threads, Path(tmp) / f"{i}-{len(results[name])}"))
    base_wall = statistics.median(w for w, _ in results[next(iter(sides))])
    base_ips = statistics.median(i for _, i in results[next(iter(sides))])
    print(f"MNIST LeNet, {opts.limit} training images, {opts.epochs} epoch(s), global batch {opts.batch}, "
          f"{cores} CPU cores, median of {opts.rounds} rounds")
    print(f"{'side':<40} {'wall s':>8} {'x 1-proc':>9} {'train img/s':>12} {'x 1-proc':>9}")
    for name, rows in results.items():
        wall = statistics.median(w for w, _ in rows)
        ips = statistics.median(i for _, i in rows)
        print(f"{name:<40} {wall:>8.1f} {base_wall / wall:>8.2f}x {ips:>12.0f} {ips / base_ips:>8.2f}x")


if __name__ == "__main__":
    main()
