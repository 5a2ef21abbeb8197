"""Data at scale: cnnexp training from a folder of photos, from the same photos as one HDF5 file and as
WebDataset shards, against the plain torchvision script of the same job, each in a fresh process: time
to the first training step, training images per second and the peak memory of the process tree (the
job and its DataLoader workers), and for HDF5 and shards the one-time build.

    python benchmarks/make_photos.py --n 25000 --out /work/bigdata/photos25k
    python benchmarks/data_scale.py --photos /work/bigdata/photos25k --size 224 --in-memory false
    python benchmarks/data_scale.py --photos /work/bigdata/photos25k --size 128 --in-memory true --epochs 2

All train `small_cnn` (batch 64, SGD, 2 DataLoader workers) on CPU. `folder` is `cnnexp train
dataset=folder` with its 0.8/0.1/0.1 split and its evaluations; `hdf5` first builds the file with
`cnnexp data build-hdf5 size=<size>` and trains `dataset=hdf5` (`dataset.in_memory` as `--in-memory`);
`shards` first builds them with `cnnexp data build-shards size=<size>` (each image resized once and
stored as a JPEG) and trains `dataset=shards`. The plain script is what a PyTorch user writes:
torchvision `ImageFolder` (Resize of the short side + CenterCrop + ToTensor) and a shuffling
`DataLoader` over the same files, no evaluation. `--jobs folder,folder,plain` runs cnnexp twice: the
folder index lives in a fresh `--cache` folder, so the first run checks every file and the second
reuses the index (the builds check through it as well). The built files go to `--build-dir` (a
temporary folder beside the photos unless given; given, a build already there is reused and its
time not measured). Peak memory is sampled
every 0.1 s from /proc: RSS summed over the tree (shared pages counted in every process, as `top`
adds them up) and PSS (shared pages divided among the processes that share them: what the tree
really holds). img/s needs a machine that runs nothing else; memory does not.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---- memory of a process tree ---------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB; (0, 0) once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    except (OSError, ValueError):
        return 0, 0
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


class PeakMemory(threading.Thread):
    """Samples the tree's summed RSS and PSS until stopped; keeps the peaks (MB)."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every, self.rss_mb, self.pss_mb = pid, every, 0.0, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            samples = [memory_kb(pid) for pid in tree(self.pid)]
            self.rss_mb = max(self.rss_mb, sum(r for r, _ in samples) / 1024)
            self.pss_mb = max(self.pss_mb, sum(p for _, p in samples) / 1024)
            self.done.wait(self.every)


def sampled(argv: list[str]) -> PeakMemory:
    """Run `python argv` to its end, sampling its tree's memory; exits with its stderr if it fails."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = PeakMemory(proc.pid)
    sampler.start()
    _, stderr = proc.communicate()
    sampler.done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv[:4])} ... failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    return sampler


def measured(argv: list[str], report: Path) -> dict:
    """Run one job; its report (first step time, img/s) with the wall time and peak memory."""
    start = time.time()
    sampler = sampled(argv)
    result = json.loads(report.read_text())
    return {"first step s": result["first_step"] - start, "img/s": result["images_per_second"],
            "wall s": time.time() - start, "peak RSS MB": sampler.rss_mb, "peak PSS MB": sampler.pss_mb}


# ---- the one-time builds (HDF5, shards) ------------------------------------------------------------
def built_path(args, job: str) -> Path:
    return args.build_dir / ("photos.h5" if job == "hdf5" else "shards")


def build(args, job: str) -> dict:
    """`cnnexp data build-hdf5|build-shards` of the photos at the benchmark's size, unless already built
    in `--build-dir`; its wall time and peak memory (empty when reused)."""
    out = built_path(args, job)
    if out.exists():
        return {}
    tool = "build-hdf5" if job == "hdf5" else "build-shards"
    start = time.time()
    sampler = sampled(["-m", "cnnexp", "data", tool, f"src={args.photos}", f"out={out}", f"size={args.size}"])
    return {"build s": time.time() - start, "build PSS MB": sampler.pss_mb}


# ---- the jobs (each runs in a child process: `--child folder|hdf5|shards|plain`) -----------------------
def dataset_keys(args) -> list[str]:
    """The dataset overrides of a cnnexp job."""
    if args.child == "folder":
        return ["dataset=folder", f"dataset.root={args.photos}", f"dataset.size={args.size}",
                f"dataset.in_memory={args.in_memory}"]
    if args.child == "hdf5":
        return ["dataset=hdf5", f"dataset.path={built_path(args, 'hdf5')}", f"dataset.in_memory={args.in_memory}"]
    return ["dataset=shards", f"dataset.path={built_path(args, 'shards')}"]


def limit_keys(args) -> list[str]:
    """--limit for cnnexp: at most that many images in each split (every file is still listed and checked)."""
    return [] if args.limit is None else [f"dataset.limit={args.limit}"]


def cnnexp_child(args, report: Path) -> None:
    """`cnnexp train` of one data source in this process, noting the time of its first training step."""
    from cnnexp.cli import main
    from cnnexp.engine.trainer import Trainer

    first: list[float] = []
    step = Trainer.train_step

    def noted(self, inputs, labels):
        if not first:
            first.append(time.time())
        return step(self, inputs, labels)

    Trainer.train_step = noted
    with tempfile.TemporaryDirectory() as run_dir:
        code = main(["train", *dataset_keys(args), "model=small_cnn", "trainer.batch_size=64",
                     f"trainer.epochs={args.epochs}", "device=cpu", f"hydra.run.dir={run_dir}/run", *limit_keys(args),
                     *args.override])
        if code:
            raise SystemExit(code)
        metrics = json.loads((Path(run_dir) / "run" / "metrics.json").read_text())
    report.write_text(json.dumps({"first_step": first[0], "images_per_second": metrics["images_per_second"]}))


def plain_child(args, report: Path) -> None:
    """The tutorial script: ImageFolder + DataLoader, the same network, no evaluation."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from cnnexp.models import create_model

    torch.manual_seed(0)
    prepare = transforms.Compose([transforms.Resize(args.size), transforms.CenterCrop(args.size), transforms.ToTensor()])
    photos = datasets.ImageFolder(str(args.photos), transform=prepare)
    dataset = photos  # or a seeded random subset of --limit images, after ImageFolder has listed every file
    if args.limit is not None:
        dataset = Subset(photos, torch.randperm(len(photos))[:args.limit].tolist())
    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2)
    model = create_model("small_cnn", (3, args.size, args.size), len(photos.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    first, images, start = None, 0, None
    for _ in range(args.epochs):
        for x, y in loader:
            if first is None:
                first = start = time.time()
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images += len(y)
    report.write_text(json.dumps({"first_step": first, "images_per_second": images / (time.time() - start)}))


BUILT = ("hdf5", "shards")  # the jobs that read something built first
CHILDREN = {"folder": cnnexp_child, "hdf5": cnnexp_child, "shards": cnnexp_child, "plain": plain_child}
COLUMNS = ("first step s", "img/s", "wall s", "peak PSS MB", "peak RSS MB", "build s", "build PSS MB")


def table(rows: list[tuple[str, dict]]) -> str:
    """A markdown table, one row per job; a value a job does not have (a build) is blank."""
    lines = ["| job | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{result[key]:.1f}" if key in result else "" for key in COLUMNS) + " |"
              for name, result in rows]
    return "\n".join(lines)


def run_jobs(args, scratch: Path) -> list[tuple[str, dict]]:
    """Each job in turn (its build first, once), printing its numbers as they come."""
    rows, built = [], set()
    for i, job in enumerate(args.jobs):
        result = {}
        if job in BUILT and job not in built:
            result = build(args, job)
            built.add(job)
        report = scratch / f"{i}.json"
        argv = [__file__, *sys.argv[1:], "--child", job, "--report", str(report), "--build-dir", str(args.build_dir)]
        result = {**measured(argv, report), **result}
        rows.append((job, result))
        print(f"{job}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="a folder of class folders (make_photos.py)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--in-memory", default="false", choices=("true", "false", "auto"), help="cnnexp's choice")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, help="train on at most this many images (cnnexp: dataset.limit, each "
                        "split; plain: a random subset), so a 100,000-photo folder is measured in minutes")
    parser.add_argument("--jobs", default="folder,hdf5,shards,plain",
                        help=f"comma-separated, run in this order: {', '.join(CHILDREN)}")
    parser.add_argument("--build-dir", type=Path, help="where the HDF5 file and the shards go (kept; reused)")
    parser.add_argument("--cache", type=Path, help="cnnexp's index cache (CNNEXP_CACHE); default: a fresh folder")
    parser.add_argument("--override", action="append", default=[], help="another cnnexp key=value (repeatable)")
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.photos = args.photos.resolve()
    if args.child:
        CHILDREN[args.child](args, args.report)
        return
    args.jobs = args.jobs.split(",")
    unknown = sorted(set(args.jobs) - set(CHILDREN))
    if unknown:
        raise SystemExit(f"error: unknown job {', '.join(unknown)} in --jobs; choose from {', '.join(CHILDREN)}")
    with tempfile.TemporaryDirectory(dir=args.photos.parent, prefix=".data_scale-") as scratch:
        scratch = Path(scratch)
        args.build_dir = (args.build_dir or scratch / "built").resolve()
        args.build_dir.mkdir(parents=True, exist_ok=True)
        os.environ["CNNEXP_CACHE"] = str((args.cache or scratch / "cache").resolve())
        rows = run_jobs(args, scratch)
    limit = "" if args.limit is None else f", at most {args.limit} images a split"
    print(f"\n{args.photos} at {args.size} px, {args.epochs} epoch(s){limit}, cnnexp in_memory={args.in_memory}, "
          f"{os.cpu_count()} CPUs\n" + table(rows))


if __name__ == "__main__":
    main()
