"""Start-up time of the CLI: `--help` / `--cfg job`, and a train run from process start to its first step.

    python benchmarks/startup.py [--runs 5] [--compare <another source tree>] [--olivetti <olivettifaces.gif>]

Each command runs as a fresh process (`python -m cnnexp ...`, the code of this checkout, or of the
tree given with --compare, e.g. an older commit exported with `git archive`), taking turns run by run
so that a busy machine slows both alike; the median wall and CPU (user+sys) seconds are printed. The
train row is the time from starting the process to the first training step (the Olivetti tutorial's
LeNet): a hook in the child notes the moment `Trainer.train_step` is first called.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GIF = ROOT.parent / "shared" / "datasets" / "olivetti" / "olivettifaces.gif"
COMMANDS = [["--help"], ["train", "--help"], ["train", "--cfg", "job"], ["data", "build-hdf5", "--help"],
            ["sweep", "--help"], ["eval", "--cfg", "job"]]
# Run in the child: note when the first training step starts, then run the CLI as `python -m cnnexp` would.
FIRST_STEP_HOOK = """
import sys, time
from cnnexp.engine import trainer as trainer_module
original = trainer_module.Trainer.train_step
def first_step(self, *args, **kwargs):
    if not getattr(first_step, "seen", False):
        first_step.seen = True
        sys.stderr.write(f"first step at {time.time()!r}\\n")
        sys.stderr.flush()
    return original(self, *args, **kwargs)
trainer_module.Trainer.train_step = first_step
from cnnexp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(tree: Path, argv: list[str], cwd: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stderr) of one `python <argv>` with the cnnexp of `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("CNNEXP_DEBUG", None)
    cpu, start = children_cpu(), time.time()
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with {tree}:\n{proc.stderr[-2000:]}")
    return wall, children_cpu() - cpu, proc.stderr


def first_step_seconds(tree: Path, gif: Path, cwd: str) -> tuple[float, float]:
    """(seconds from process start to the first train_step, CPU seconds of the whole short run)."""
    args = ["train", "experiment=olivetti_lenet", f"dataset.root={gif}", "trainer.epochs=1",
            "device.threads=1", f"hydra.run.dir={tempfile.mkdtemp(dir=cwd)}"]
    start = time.time()
    _, cpu, stderr = timed(tree, ["-c", FIRST_STEP_HOOK, *args], cwd)
    stamp = next(line for line in stderr.splitlines() if line.startswith("first step at "))
    return float(stamp.split()[-1]) - start, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command per tree, taking turns")
    parser.add_argument("--compare", type=Path, help="another cnnexp source tree, measured in the same turns")
    parser.add_argument("--olivetti", type=Path, default=DEFAULT_GIF, help="olivettifaces.gif for the train row")
    args = parser.parse_args()
    trees = {"this": ROOT} | ({"compare": args.compare.resolve()} if args.compare else {})
    rows = [" ".join(c) for c in COMMANDS] + ["train, start -> first step"]
    seconds = {(tree, row): [] for tree in trees for row in rows}
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(args.runs):
            for tree_name, tree in trees.items():
                for command, row in zip(COMMANDS, rows):
                    wall, cpu, _ = timed(tree, ["-m", "cnnexp", *command], cwd)
                    seconds[tree_name, row].append((wall, cpu))
                seconds[tree_name, rows[-1]].append(first_step_seconds(tree, args.olivetti, cwd))
    print(f"median of {args.runs} runs, seconds (wall / CPU user+sys; the train row: wall to the first step / "
          f"CPU of the whole 1-epoch run); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'command':<28}" + "".join(f"{name + ' (' + str(tree)[-30:] + ')':>44}" for name, tree in trees.items()))
    for row in rows:
        cells = []
        for tree_name in trees:
            samples = seconds[tree_name, row]
            wall, cpu = statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)
            cells.append(f"{wall:7.2f} / {cpu:5.2f}")
        print(f"{row:<28}" + "".join(f"{cell:>44}" for cell in cells))


if __name__ == "__main__":
    main()
