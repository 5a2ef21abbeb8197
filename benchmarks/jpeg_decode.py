"""Decoding speed of ordinary JPEG photos at a training size, before and after a change of
`cnnexp/data/images.py`, against a plain hand-written Pillow loop of the same job.

    python benchmarks/jpeg_decode.py [--before main] [--folder ../shared/datasets/cats_and_dogs]
                                     [--size 224] [--files 600] [--rounds 3]

Each round decodes the same files (the first --files JPEGs of the folder, sorted) to RGB at --size
(scale to cover, centre-crop) three ways, taking turns:
  - after    `read_image` of this checkout (what dataset=folder, build-hdf5 and the probes run)
  - before   `read_image` of `cnnexp/data/images.py` at the git revision --before, loaded from git
  - plain    Image.open, draft (libjpeg's reduced-scale decoding), convert("RGB"), ImageOps.fit: the
             loop a user would write
It prints files/s per way (the median over rounds) and the ratios after/before and after/plain.
One process, one thread: run it on an otherwise idle machine.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def module_at(revision: str):
    """cnnexp/data/images.py as it was at `revision`, imported under another name."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:cnnexp/data/images.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "images_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("images_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        return np.asarray(ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR))


def files_per_second(decode, files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        decode(path)
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main")
    parser.add_argument("--folder", type=Path, default=ROOT.parent / "shared" / "datasets" / "cats_and_dogs")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from cnnexp.data import images as after

    before = module_at(args.before)
    files = sorted(args.folder.rglob("*.jpg"))[: args.files]
    if not files:
        sys.exit(f"no .jpg files under {args.folder}")
    size = (args.size, args.size)
    differ = sum(not np.array_equal(after.read_image(p, 3, size, "aspect"), before.read_image(p, 3, size, "aspect"))
                 for p in files)  # EXIF-rotated photos, if any, are the only ones that should
    ways = {"after": lambda p: after.read_image(p, 3, size, "aspect"),
            "before": lambda p: before.read_image(p, 3, size, "aspect"),
            "plain": lambda p: plain(p, args.size)}
    for decode in ways.values():  # warm the page cache and the libraries
        files_per_second(decode, files[:20])
    speeds = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, decode in ways.items():
            speeds[name].append(files_per_second(decode, files))
    median = {name: statistics.median(values) for name, values in speeds.items()}
    print(f"{len(files)} JPEGs of {args.folder} at {args.size} px, {args.rounds} rounds (median files/s); "
          f"{differ} decode to other pixels after than before:")
    for name, value in median.items():
        print(f"  {name:<7} {value:8.1f} files/s   rounds: {', '.join(f'{v:.1f}' for v in speeds[name])}")
    print(f"after/before {median['after'] / median['before']:.3f}   after/plain {median['after'] / median['plain']:.3f}")


if __name__ == "__main__":
    main()
