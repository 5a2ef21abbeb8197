"""Two commits of cnnexp side by side: the same jobs as fresh processes, interleaved, and the ratio of
their times with its spread. Run it before a change lands, against the commit the change starts from:

    python benchmarks/compare.py 387fe52                       # 387fe52 against this checkout, every job
    python benchmarks/compare.py 387fe52 HEAD --jobs olivetti,help --repeats 6

BASE and HEAD are commits (any name git knows) or `.`, this checkout as it is, uncommitted changes
included (HEAD's default). A commit is checked out once with `git worktree add --detach` under
--cache and reused by later calls (`git worktree remove <folder>` deletes one). Each side runs with
this Python and its packages, its own cnnexp source first on PYTHONPATH.

Every job runs --repeats times a side, in pairs that alternate their order (base then head, head then
base, ...) so that a machine getting busier or quieter slows both alike. For each job the suite prints
the median wall and CPU seconds (user + system, the job's child processes included) of each side, the
command's peak memory (MB resident, its own process) for train and features, and the ratio head / base of
each pair: min, median and max. Below 1.00: HEAD is faster (or smaller). The serve job
gives milliseconds per request (the inverse of requests/s, and the server's CPU per request); the
plain job gives each side's images/s against a plain PyTorch loop (benchmarks/train_speed.py --parts
mnist of that side), where a ratio above 1.00 is HEAD ahead.

Jobs (--jobs, comma-separated; all by default):
  olivetti  cnnexp train experiment=olivetti_lenet trainer.epochs=20 seed=1 device=cpu (the tutorial run)
  mnist     cnnexp train experiment=mnist_lenet trainer.epochs=2 (50,000 images, --mnist)
  alexnet   one epoch of model=alexnet_bn at 227x227 on dogs-vs-cats photos (--photos-small)
  help      cnnexp --help
  features  cnnexp features model=alexnet_bn on 1,000 photos at 227x227 (--photos)
  serve     cnnexp serve of a 1-epoch Olivetti run, 32 clients for --serve-seconds
  plain     benchmarks/train_speed.py --parts mnist --rounds 1 --limit 10000: cnnexp against a plain loop
"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
CLIENTS = 32


@dataclass
class Side:
    """One commit's source tree and what its jobs measured: {job: {measure: [values]}}."""

    name: str  # base or head
    commit: str
    tree: Path
    results: dict = field(default_factory=dict)

    def env(self) -> dict:
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        env.pop("CNNEXP_DEBUG", None)
        return env


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def checkout(commit: str, cache: Path) -> Path:
    """The source tree of `commit`: this checkout for `.`, else a detached worktree under `cache`."""
    if commit == ".":
        return ROOT
    sha = git("rev-parse", "--verify", f"{commit}^{{commit}}")
    tree = cache / sha[:12]
    if not (tree / "cnnexp" / "__init__.py").exists():
        cache.mkdir(parents=True, exist_ok=True)
        git("worktree", "prune")
        git("worktree", "add", "--detach", "--force", str(tree), sha)
    return tree


def compile_tree(tree: Path) -> None:
    """Byte-compile a fresh tree first, so that its first timed run does not pay for it."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "cnnexp")], check=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(side: Side, argv: list[str], cwd: Path) -> dict:
    """Wall and CPU seconds of one `python <argv>` with the side's cnnexp (its children's CPU included:
    they are waited for, as the curves process and DataLoader workers are) and the process's own peak
    resident memory (its children's not included)."""
    cpu, start = children_cpu(), time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=side.env(), stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # Popen's own wait would not give the peak memory
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        wall, cpu = time.perf_counter() - start, children_cpu() - cpu
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        last = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
        raise JobFailed(f"{' '.join(argv[:4])} ... exited with {code} on {side.name} {side.commit}: {last}")
    return {"wall s": wall, "CPU s": cpu, "peak MB": usage.ru_maxrss / 1024, "output": stdout}


class JobFailed(Exception):
    pass


# ---- the jobs: each returns {measure: value} for one run of one side ---------------------------------------
def train_job(*overrides: str):
    def run(side: Side, scratch: Path, args) -> dict:
        folder = tempfile.mkdtemp(dir=scratch)
        result = timed(side, ["-m", "cnnexp", "train", *[o.format(args=args) for o in overrides], "device=cpu",
                              f"hydra.run.dir={folder}/run"], scratch)
        return {k: result[k] for k in ("wall s", "CPU s", "peak MB")}
    return run


def help_job(side: Side, scratch: Path, args) -> dict:
    result = timed(side, ["-m", "cnnexp", "--help"], scratch)
    return {k: result[k] for k in ("wall s", "CPU s")}


def features_job(side: Side, scratch: Path, args) -> dict:
    out = Path(tempfile.mkdtemp(dir=scratch)) / "features.h5"
    result = timed(side, ["-m", "cnnexp", "features", "model=alexnet_bn", "dataset=folder",
                          f"dataset.root={args.photos}", "dataset.size=227", "dataset.limit=1000", "splits=[train]",
                          f"out={out}", "device=cpu"], scratch)
    return {k: result[k] for k in ("wall s", "CPU s", "peak MB")}


def serve_job(side: Side, scratch: Path, args) -> dict:
    """One server start and --serve-seconds of 32 clients (after a second's warm-up): milliseconds per
    answered request, of wall time and of the server's CPU (the clients run in this process)."""
    import serve_load

    run = served_run(side, scratch)
    port = serve_load.free_port()
    server = subprocess.Popen([sys.executable, "-m", "cnnexp", "serve", f"run={run}", f"port={port}", "device=cpu",
                               "device.threads=1"], cwd=scratch, env=side.env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        serve_load.wait_healthy(server, port)
        payload = serve_load.request_bytes(port, serve_load.face_png())
        load = serve_load.run_loop(serve_load.load([(port, payload)], [server.pid], CLIENTS, args.serve_seconds))
    finally:
        serve_load.stop(server)
    answered = max(len(load["latencies"]), 1)
    if load["errors"]:
        raise JobFailed(f"serve answered {load['errors']} requests with errors on {side.name} {side.commit}")
    return {"wall ms/request": 1000 * load["seconds"] / answered, "CPU ms/request": 1000 * load["cpu"] / answered}


def served_run(side: Side, scratch: Path) -> Path:
    """A 1-epoch Olivetti LeNet run trained by the side's own code (once a side), for its server."""
    run = scratch / f"served-{side.name}"
    if not (run / "checkpoints" / "best.pt").exists():
        timed(side, ["-m", "cnnexp", "train", "experiment=olivetti_lenet", "trainer.epochs=1", "device=cpu",
                     f"hydra.run.dir={run}"], scratch)
    return run


def plain_job(side: Side, scratch: Path, args) -> dict:
    """The side's own cnnexp-against-a-plain-loop benchmark (MNIST LeNet, one round, 10,000 images)."""
    script = side.tree / "benchmarks" / "train_speed.py"
    parts = ["--parts", "mnist"] if "--parts" in script.read_text() else []  # older scripts run only this part
    output = timed(side, [str(script), *parts, "--rounds", "1", "--limit", "10000", f"--mnist={args.mnist}"],
                   scratch)["output"]
    ratio = re.search(r"ratio cnnexp / plain loop\s+([\d.]+)x", output)
    if ratio is None:
        raise JobFailed(f"{script} printed no 'ratio cnnexp / plain loop' on {side.name} {side.commit}")
    return {"cnnexp / plain loop (x)": float(ratio.group(1))}


JOBS = {
    "olivetti": train_job("experiment=olivetti_lenet", "trainer.epochs=20", "seed=1"),
    "mnist": train_job("experiment=mnist_lenet", "dataset.root={args.mnist}", "trainer.epochs=2", "seed=1"),
    "alexnet": train_job("model=alexnet_bn", "dataset=folder", "dataset.root={args.photos_small}", "dataset.size=227",
                         "trainer.epochs=1", "seed=1"),
    "help": help_job,
    "features": features_job,
    "serve": serve_job,
    "plain": plain_job,
}


# ---- the comparison ----------------------------------------------------------------------------------------
def compare_job(name: str, sides: list[Side], repeats: int, scratch: Path, args) -> None:
    """`repeats` runs a side, in pairs of alternating order; the results go to each side's `results`."""
    for i in range(repeats):
        for side in sides if i % 2 == 0 else sides[::-1]:
            for measure, value in JOBS[name](side, scratch, args).items():
                side.results.setdefault(name, {}).setdefault(measure, []).append(value)


def report(name: str, base: Side, head: Side) -> list[str]:
    lines = []
    for measure, base_values in base.results[name].items():
        head_values = head.results[name][measure]
        ratios = [h / b for h, b in zip(head_values, base_values)]
        medians = f"{statistics.median(base_values):10.3f} {statistics.median(head_values):10.3f}"
        lines.append(f"{name:<9} {measure:<24} {medians}"
                     f"   {min(ratios):5.2f} {statistics.median(ratios):6.2f} {max(ratios):5.2f}"
                     f"   ({', '.join(f'{r:.2f}' for r in ratios)})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("base", help="the commit to compare against (e.g. main, 387fe52)")
    parser.add_argument("head", nargs="?", default=".", help="the commit to measure; `.` (default): this checkout")
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, of: {', '.join(JOBS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each job on each side (default 3)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cnnexp-compare",
                        help="where commits are checked out (kept for later calls)")
    parser.add_argument("--mnist", type=Path, default=DATASETS / "mnist")
    parser.add_argument("--photos", type=Path, default=DATASETS / "cats_and_dogs",
                        help="dogs-vs-cats photos with train/ (features: 1,000 of them)")
    parser.add_argument("--photos-small", type=Path, default=DATASETS / "cats_and_dogs_small",
                        help="dogs-vs-cats photos with train/, validation/, test/ (alexnet)")
    parser.add_argument("--serve-seconds", type=float, default=3.0, help="measured seconds of load per serve run")
    args = parser.parse_args(argv)
    jobs = args.jobs.split(",")
    unknown = [job for job in jobs if job not in JOBS]
    if unknown or args.repeats < 1:
        parser.error(f"unknown jobs: {', '.join(unknown)} (known: {', '.join(JOBS)})" if unknown
                     else "--repeats must be at least 1")
    sys.path.insert(0, str(Path(__file__).parent))  # serve_load, for the serve job's clients
    base, head = (Side(name, commit, checkout(commit, args.cache)) for name, commit in
                  (("base", args.base), ("head", args.head)))
    for side in (base, head):
        compile_tree(side.tree)
    print(f"base {base.commit} ({base.tree}) against head {head.commit} ({head.tree}); {args.repeats} runs a side, "
          f"alternating; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'job':<9} {'measure':<24} {'base':>10} {'head':>10}   {'head / base: min median max':<28}")
    wall = time.perf_counter()
    failed = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in jobs:
            try:
                compare_job(name, [base, head], args.repeats, Path(scratch), args)
            except JobFailed as exc:
                print(f"{name:<9} failed: {exc}", flush=True)
                failed += 1
                continue
            print("\n".join(report(name, base, head)), flush=True)
    print(f"wall time {time.perf_counter() - wall:.0f} s; values are medians; ratios below 1.00 (above, for "
          f"`cnnexp / plain loop`): head faster")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
