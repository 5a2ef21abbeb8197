"""Decompression bombs against `cnnexp serve` and a dataset=folder training run: the memory they cost.

    python benchmarks/image_bombs.py [--run outputs/train/<run>] [--uploads 10] [--out docs/results/image_bombs.md]

Two grey PNGs of zeros are made here: 20000 x 20000 (400 megapixels, ~390 KB) and 12000 x 12000 (144
megapixels, ~140 KB). Each decodes to 400 MB / 144 MB of pixels (and more for RGB) where nothing checks
its header first.
  - serve     `cnnexp serve` in a subprocess on 127.0.0.1 (without --run, a one-epoch Olivetti LeNet
              is trained first); ten ordinary uploads warm it up, then each bomb is uploaded --uploads
              times. The server's peak RSS (VmHWM in /proc/<pid>/status) before and after the bombs,
              every answer's status, and an ordinary upload afterwards.
  - plain     the same bytes through a plain hand-written Pillow loop (Image.open, convert("L"), the
              decompression-bomb limit lifted as an application that "just decodes" does), one upload
              of each in a fresh process: the peak RSS it adds.
  - training  `cnnexp train dataset=folder` on two classes of Olivetti faces with both bombs in one
              class: its exit code and the warning naming the skipped files.
"""

import argparse
import http.client
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

from serve_load import free_port, wait_healthy  # benchmarks/ is on the path of a script run from it

ROOT = Path(__file__).resolve().parents[1]
BOMBS = {"400-MP bomb": (20000, 20000), "144-MP bomb": (12000, 12000)}


def png_bomb(width: int, height: int) -> bytes:
    """A grey PNG of width x height zeros, compressed row by row (never held decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(width + 1)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def upload(port: int, name: str, data: bytes) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def face_png(index: int) -> bytes:
    from PIL import Image

    from cnnexp.data.sources.olivetti import embedded_gif, read_faces

    buffer = io.BytesIO()
    Image.fromarray(read_faces(embedded_gif())[index]).save(buffer, format="PNG")
    return buffer.getvalue()


def train_olivetti(folder: Path) -> Path:
    run = folder / "olivetti"
    subprocess.run([sys.executable, "-m", "cnnexp", "train", "trainer.epochs=1", "device=cpu",
                    f"hydra.run.dir={run}"], check=True, capture_output=True)
    return run


def serve_bombs(run: Path, bombs: dict, uploads: int) -> list[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cnnexp", "serve", f"run={run}", f"port={port}", "device=cpu",
                             "device.threads=1", "max_upload_mb=10"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_healthy(proc, port)
        face = face_png(0)
        warm = [upload(port, "face.png", face)[0] for _ in range(10)]
        before = peak_rss_mb(proc.pid)
        statuses = {name: [upload(port, f"{name}.png", data)[0] for _ in range(uploads)] for name, data in bombs.items()}
        after = peak_rss_mb(proc.pid)
        last = upload(port, "face.png", face)[0]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    lines = [f"serve: peak RSS {before:.1f} MB after {len(warm)} ordinary uploads ({set(warm)}), {after:.1f} MB after "
             f"the bombs: +{after - before:.1f} MB (target < 100 MB)"]
    lines += [f"  {name} x{uploads}: statuses {sorted(set(codes))} ({len(codes)} answers)" for name, codes in statuses.items()]
    lines.append(f"  an ordinary upload afterwards: {last}")
    return lines


PLAIN_LOOP = """
import io, sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
data = open(sys.argv[1], "rb").read()
def peak():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) / 1024
before = peak()
Image.open(io.BytesIO(data)).convert("L")
print(peak() - before)
"""


def plain_decoding(bombs: dict, folder: Path) -> list[str]:
    lines = []
    for name, data in bombs.items():
        path = folder / f"{name}.png"
        path.write_bytes(data)
        added = subprocess.run([sys.executable, "-c", PLAIN_LOOP, str(path)], check=True, capture_output=True,
                               text=True).stdout.strip()
        lines.append(f"plain Pillow loop, one {name} ({len(data) / 1024:.0f} KB): +{float(added):.1f} MB peak RSS")
    return lines


def training(bombs: dict, folder: Path) -> list[str]:
    root = folder / "faces"
    for label, indices in (("person_a", range(0, 10)), ("person_b", range(10, 20))):
        (root / label).mkdir(parents=True)
        for i in indices:
            (root / label / f"{i}.png").write_bytes(face_png(i))
    for name, data in bombs.items():
        (root / "person_a" / f"{name.replace(' ', '_')}.png").write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "cnnexp", "train", "dataset=folder", f"dataset.root={root}",
                           "dataset.size=32", "dataset.channels=1", "model=small_cnn", "model.widths=[4,8]",
                           "trainer.epochs=1", "trainer.batch_size=4", "device=cpu", f"hydra.run.dir={folder / 'run'}"],
                          capture_output=True, text=True)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    return [f"training on the folder with both bombs: exit {proc.returncode}", *(f"  {w}" for w in warnings)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.pop("CNNEXP_DEBUG", None)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        bombs = {name: png_bomb(*size) for name, size in BOMBS.items()}
        run = args.run or train_olivetti(folder)
        lines = [*serve_bombs(run, bombs, args.uploads), *plain_decoding(bombs, folder), *training(bombs, folder)]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
