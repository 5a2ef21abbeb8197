"""A folder of N real-photo JPEGs for the data-scale benchmark (benchmarks/data_scale.py).

    python benchmarks/make_photos.py --n 25000 --out /work/bigdata/photos25k [--src ../shared/datasets/cats_and_dogs]

Every file is a different view of one of the shared Kaggle dogs-vs-cats photos (all splits of the
source folder): a random crop of 55-100 % of each side, mirrored half the time, scaled so that its
longer side is 220-640 pixels and saved as a JPEG of quality 65-97. The class folders are `cats/`
and `dogs/`, as the photo's own folder; the names say which photo and which view. The same N and
seed make the same files; an existing file is kept, so a run that stopped can be continued.
"""

import argparse
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def source_photos(src: Path) -> list[tuple[Path, str]]:
    """(photo, class) of every JPEG under src/<split>/<class>/ or src/<class>/, in a fixed order."""
    photos = sorted(src.rglob("*.jpg"))
    if not photos:
        sys.exit(f"error: no .jpg photos under {src}; give --src a dogs-vs-cats folder")
    return [(path, path.parent.name) for path in photos]


def make_view(job: tuple[int, Path, str, Path, int]) -> int:
    """Write view i of a photo (if not there yet); the bytes written (0 when kept)."""
    i, photo, label, out, seed = job
    target = out / label / f"{photo.stem}.v{i}.jpg"
    if target.exists():
        return 0
    rng = np.random.default_rng([seed, i])
    with Image.open(photo) as opened:
        image = opened.convert("RGB")
    w, h = image.size
    cw, ch = (max(16, int(side * rng.uniform(0.55, 1.0))) for side in (w, h))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    view = image.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = rng.uniform(220, 640) / max(cw, ch)
    view = view.resize((max(8, round(cw * scale)), max(8, round(ch * scale))), Image.Resampling.BILINEAR)
    partial = target.with_suffix(".part")
    view.save(partial, format="JPEG", quality=int(rng.integers(65, 98)))
    partial.rename(target)
    return target.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=25000, help="how many photos to write")
    parser.add_argument("--out", type=Path, required=True, help="the folder to fill (cats/ and dogs/ in it)")
    parser.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "datasets" / "cats_and_dogs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    photos = source_photos(args.src)
    for label in sorted({label for _, label in photos}):
        (args.out / label).mkdir(parents=True, exist_ok=True)
    jobs = [(i, *photos[i % len(photos)], args.out, args.seed) for i in range(args.n)]
    written = 0
    with Pool(args.processes) as pool:
        for done, size in enumerate(pool.imap_unordered(make_view, jobs, chunksize=64), 1):
            written += size
            if done % 5000 == 0 or done == args.n:
                print(f"{done}/{args.n} photos, {written / 2**20:.0f} MB written", flush=True)


if __name__ == "__main__":
    main()
