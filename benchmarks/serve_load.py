"""Load test of `cnnexp serve` against plain one-request-per-forward-pass endpoints of the same model.

    python benchmarks/serve_load.py [--run outputs/train/<olivetti lenet run>] [--seconds 12] [--rounds 3]
                                    [--clients 1 8 32] [--threads 1] [--out docs/results/serve_load.md]
    python benchmarks/serve_load.py --two-runs [--run ...] [--run2 ...] [--whole-image] [...]
    python benchmarks/serve_load.py --servers "cnnexp serve" --token --before <source tree> --clients 32 [...]

Without --run it first trains the Olivetti LeNet (experiment=olivetti_lenet: nkerns [20,50], hidden 2000)
for 5 epochs (the weights do not change the speed). Servers, on 127.0.0.1:
  - cnnexp serve      the real command (micro-batching: max_batch 32, max_wait_ms 5)
  - cnnexp serve onnxruntime   the same command with backend=onnxruntime: the run exported by
                      `cnnexp export` (done first) and run by ONNX Runtime instead of PyTorch
  - plain FastAPI     a synchronous FastAPI endpoint under uvicorn, one forward pass per request
                      (FastAPI runs sync endpoints on its thread pool, so requests run side by side)
  - plain Tornado     a Tornado handler as in the age/gender tutorial, one forward pass per request
                      (needs `pip install tornado`; leave it out with --servers otherwise)
  - cnnexp serve token     (--token) the same command with token=<random>; every request carries
                      `Authorization: Bearer <token>`, as a service on a network requires
  - cnnexp serve before    (--before DIR) the same command run from another source tree, e.g. the
                      commit before a change (`git archive <commit> | tar -x -C DIR`); with it, the
                      last column compares each server with this one
All three decode and score with the same code (cnnexp.serve.model.ServedModel), so the difference is
the serving. All three servers are started first (an idle server costs nothing); then for each number
of clients the servers take turns, --rounds times, each turn a one-second warm-up and --seconds/rounds
measured, with that many clients sending an Olivetti face (multipart, as curl -F does) back to back on
keep-alive connections. The table gives requests/s, latency percentiles, errors (any non-200 answer,
timeout or broken connection), the mean batch the answers report, and the server's CPU time per
request. The clients run in this process, on the same machine as the servers.

--two-runs: one service for two named runs against two one-run services, as the age/gender service
answers age and gender for a photo. Servers:
  - two runs, one request   `cnnexp serve run={a:<run>,b:<run2>} detect_face=true`: one request a photo
  - two one-run requests    `cnnexp serve run=<run> detect_face=true` and the same for <run2>: each
                            client sends the photo to both at once and counts the pair as one
The photo is an Olivetti face enlarged on a 640x480 background, so the face detector has work to do
(--whole-image: the 57x47 face, detect_face=false). --run2 defaults to a second run trained by the
benchmark on 52x42 crops (augmentation=patch), so the two runs differ in input size. Requests/s of the
first over pairs/s of the second is printed as the ratio (above 1: the two-run service costs less).
"""

import argparse
import asyncio
import io
import json
import os
import socket
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMUP_S = 1.0
REQUEST_TIMEOUT_S = 30
TOKEN = secrets.token_urlsafe(24)  # the token of "cnnexp serve token"


# ---- the plain servers (run as `python serve_load.py plain-fastapi|plain-tornado RUN PORT THREADS`) ----
def served_model(run: str, threads: int):
    from cnnexp.runner.compose import compose_config
    from cnnexp.serve.model import ServedModel

    return ServedModel(compose_config("serve", [f"run={run}", f"device.threads={threads}", "device=cpu"]))


def one_answer(model, data: bytes, name: str) -> dict:
    tensor, _ = model.prepare(data, name)
    guesses, seconds = model.classify([tensor])
    return {"images": [{"image": name, "top": guesses[0], "model_ms": round(seconds * 1000, 3), "batch": 1}]}


def plain_fastapi(run: str, port: int, threads: int) -> None:
    import uvicorn
    from fastapi import FastAPI, File, UploadFile

    model = served_model(run, threads)
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(image: UploadFile = File(...)) -> dict:
        return one_answer(model, image.file.read(), image.filename)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def plain_tornado(run: str, port: int, threads: int) -> None:
    import tornado.ioloop
    import tornado.web

    model = served_model(run, threads)

    class Health(tornado.web.RequestHandler):
        def get(self):
            self.write({"status": "ok"})

    class Predict(tornado.web.RequestHandler):
        def post(self):
            upload = self.request.files["image"][0]
            self.write(one_answer(model, upload["body"], upload["filename"]))

    tornado.web.Application([("/health", Health), ("/predict", Predict)]).listen(port, "127.0.0.1")
    tornado.ioloop.IOLoop.current().start()


# ---- the load -------------------------------------------------------------------------------------
def request_bytes(port: int, image: bytes, token: str | None = None) -> bytes:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"face.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\n{authorization}Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def one_request(reader, writer, payload: bytes) -> tuple[int, bytes]:
    writer.write(payload)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def client(targets: list[tuple[int, bytes]], start: float, stop: float, latencies: list, errors: list,
                 batches: list) -> None:
    """Requests back to back until `stop`, to every (port, request) target at once (two targets: a pair
    counts as one request); those begun after `start` are counted."""
    connections = [None] * len(targets)
    while (begun := time.perf_counter()) < stop:
        try:
            for i, (port, _) in enumerate(targets):
                if connections[i] is None:
                    connections[i] = await asyncio.open_connection("127.0.0.1", port)
            answers = await asyncio.wait_for(asyncio.gather(*(one_request(*connection, payload) for connection, (_, payload)
                                                              in zip(connections, targets))), REQUEST_TIMEOUT_S)
            ok = all(status == 200 for status, _ in answers)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            ok, connections = False, [None] * len(targets)
        if begun >= start and ok:
            latencies.append(time.perf_counter() - begun)
            batches.append(statistics.fmean(answer_batch(body) for _, body in answers))
        elif begun >= start:
            errors.append(1)


def answer_batch(body: bytes) -> float:
    """The batch an answer reports (named runs: the mean of their batches)."""
    answer = json.loads(body)["images"][0]
    if "batch" in answer:
        return answer["batch"]
    return statistics.fmean(value["batch"] for value in answer.values() if isinstance(value, dict) and "batch" in value)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(targets: list[tuple[int, bytes]], pids: list[int], clients: int, seconds: float) -> dict:
    """One measurement: latencies of the answered requests, errors, batch sizes, and the servers' CPU
    seconds (a measure that other jobs on a shared machine disturb less than requests/s)."""
    latencies, errors, batches = [], [], []
    start = time.perf_counter() + WARMUP_S
    runs = asyncio.gather(*(client(targets, start, start + seconds, latencies, errors, batches) for _ in range(clients)))
    await asyncio.sleep(WARMUP_S)
    cpu_start = sum(map(cpu_seconds, pids))
    await runs
    return {"latencies": latencies, "errors": len(errors), "batches": batches,
            "cpu": sum(map(cpu_seconds, pids)) - cpu_start, "seconds": seconds}


def summary(server: str, clients: int, rounds: list[dict]) -> dict:
    """Requests/s, latency percentiles, errors, mean batch and server CPU ms per request over all rounds."""
    latencies = [v for r in rounds for v in r["latencies"]]
    batches = [v for r in rounds for v in r["batches"]]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [float("nan")] * 99
    return {"server": server, "clients": clients, "requests": len(latencies),
            "rps": len(latencies) / sum(r["seconds"] for r in rounds),
            "p50_ms": 1000 * cuts[49], "p95_ms": 1000 * cuts[94], "p99_ms": 1000 * cuts[98],
            "errors": sum(r["errors"] for r in rounds), "mean_batch": statistics.fmean(batches) if batches else float("nan"),
            "cpu_ms_per_request": 1000 * sum(r["cpu"] for r in rounds) / max(len(latencies), 1)}


def run_loop(coroutine):
    """uvloop when installed: a lighter client leaves more of a shared CPU to the server under test."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# ---- servers one at a time ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def commands(args, run: str, run2: str | None) -> dict[str, list[list[str]]]:
    """Each server under test: the commands that start it (two for the pair of one-run services)."""
    if args.two_runs:
        face = [] if args.whole_image else ["detect_face=true"]
        return {"two runs, one request": [serve_command(f"run={{a:{run},b:{run2}}}", *face)],
                "two one-run requests": [serve_command(f"run={run}", *face), serve_command(f"run={run2}", *face)]}
    plain = {"plain FastAPI": "plain-fastapi", "plain Tornado": "plain-tornado"}
    return {name: [serve_command(f"run={run}", f"backend={'onnxruntime' if name.endswith('onnxruntime') else 'torch'}",
                                 *([f"token={TOKEN}"] if name.endswith("token") else []))
                   if name.startswith("cnnexp serve") else [sys.executable, __file__, plain[name], run]]
            for name in args.servers}


def source_tree(name: str, args) -> Path:
    """Where a server's cnnexp comes from: --before's tree for "cnnexp serve before", else this one."""
    return Path(args.before).resolve() if name == "cnnexp serve before" else ROOT


def serve_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "cnnexp", "serve", "device=cpu", *overrides]


def start(command: list[str], threads: int, source: Path = ROOT) -> tuple[int, subprocess.Popen]:
    """(port, process) of a server started on a free port with `threads` torch threads, its cnnexp
    imported from `source`."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(source), OMP_NUM_THREADS=str(threads))
    if command[1:3] == ["-m", "cnnexp"]:
        command = [*command, f"port={port}", f"device.threads={threads}"]
    else:
        command = [*command, str(port), str(threads)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_healthy(proc, port)
    return port, proc


def wait_healthy(proc: subprocess.Popen, port: int) -> None:
    import http.client

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start: {proc.stderr.read().decode() if proc.poll() else ''}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def train_run(folder: Path, threads: int, *overrides: str) -> str:
    subprocess.run([sys.executable, "-m", "cnnexp", "train", "experiment=olivetti_lenet", "trainer.epochs=5",
                    f"device.threads={threads}", "device=cpu", f"hydra.run.dir={folder}", *overrides],
                   check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL)
    return str(folder)


def export_onnx(run: str) -> None:
    """<run>/export/model.onnx, which `cnnexp serve backend=onnxruntime` loads."""
    subprocess.run([sys.executable, "-m", "cnnexp", "export", f"run={run}"], check=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL)


def face_png() -> bytes:
    from PIL import Image

    from cnnexp.data.sources.olivetti import embedded_gif, read_faces

    buffer = io.BytesIO()
    Image.fromarray(read_faces(embedded_gif())[57]).save(buffer, format="PNG")
    return buffer.getvalue()


def face_photo() -> bytes:
    """A 640x480 JPEG with an Olivetti face enlarged to 188x228 on a grey background (the face detector
    finds it, as in the tests)."""
    from PIL import Image

    buffer = io.BytesIO()
    background = Image.new("RGB", (640, 480), (120, 130, 140))
    background.paste(Image.open(io.BytesIO(face_png())).resize((188, 228), Image.Resampling.BILINEAR), (200, 100))
    background.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def table(rows: list[dict], baseline: str) -> str:
    lines = ["| server | clients | requests/s | p50 ms | p95 ms | p99 ms | errors | mean batch | server CPU ms/request "
             f"| requests/s vs {baseline} |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = {r["clients"]: r["rps"] for r in rows if r["server"] == baseline}
    for r in rows:
        ratio = f"{r['rps'] / base[r['clients']]:.2f}x" if base.get(r["clients"]) else "-"
        lines.append(f"| {r['server']} | {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['errors']} | {r['mean_batch']:.1f} | {r['cpu_ms_per_request']:.2f} | {ratio} |")
    return "\n".join(lines)


def measure(servers: dict[str, list[tuple[int, subprocess.Popen]]], image: bytes, args) -> list[dict]:
    """For each number of clients the servers take turns, --rounds times (so a machine that gets busier
    slows all alike), a different one going first each round; one summary row per server and client count."""
    rows = []
    for clients in args.clients:
        rounds, names = {name: [] for name in servers}, list(servers)
        for turn in range(args.rounds):
            for name in names[turn % len(names):] + names[:turn % len(names)]:  # each server first in turn
                started = servers[name]
                token = TOKEN if name.endswith("token") else None
                targets = [(port, request_bytes(port, image, token)) for port, _ in started]
                rounds[name].append(run_loop(load(targets, [proc.pid for _, proc in started], clients,
                                                  args.seconds / args.rounds)))
        for name in servers:
            rows.append(summary(name, clients, rounds[name]))
            print(json.dumps(rows[-1]), flush=True)
        if args.two_runs:
            one, two = rows[-2:]
            print(f"{clients} clients: two runs in one request {one['rps']:.0f}/s, two one-run requests "
                  f"{two['rps']:.0f} pairs/s: ratio {one['rps'] / two['rps']:.2f}x", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an Olivetti LeNet train run (default: train one for 5 epochs)")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per server and client count")
    parser.add_argument("--rounds", type=int, default=3, help="turns the servers take within those seconds")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of each server")
    parser.add_argument("--servers", nargs="+", default=["cnnexp serve", "cnnexp serve onnxruntime", "plain FastAPI",
                                                         "plain Tornado"])
    parser.add_argument("--two-runs", action="store_true",
                        help="a service for two named runs against two one-run services (see above)")
    parser.add_argument("--run2", help="with --two-runs: the second run (default: train one on 52x42 crops)")
    parser.add_argument("--whole-image", action="store_true",
                        help="with --two-runs: send the 57x47 face without face detection")
    parser.add_argument("--token", action="store_true",
                        help='also "cnnexp serve token": token=<random>, every request with its bearer header')
    parser.add_argument("--before", metavar="DIR",
                        help='also "cnnexp serve before", run from this source tree (and the baseline of the ratios)')
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) and the rows (JSON) here")
    args = parser.parse_args()
    args.servers += ["cnnexp serve token"] * args.token + ["cnnexp serve before"] * bool(args.before)
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or train_run(Path(scratch) / "run", args.threads)
        run2 = (args.run2 or train_run(Path(scratch) / "run2", args.threads, "augmentation=patch")) if args.two_runs else None
        if not args.two_runs and "cnnexp serve onnxruntime" in args.servers:
            export_onnx(run)
        image = face_png() if not args.two_runs or args.whole_image else face_photo()
        servers = {}
        try:
            for name, started in commands(args, run, run2).items():
                servers[name] = [start(command, args.threads, source_tree(name, args)) for command in started]
            rows = measure(servers, image, args)
        finally:
            for started in servers.values():
                for _, proc in started:
                    stop(proc)
    result = table(rows, "two one-run requests" if args.two_runs else "cnnexp serve before" if args.before
                   else "plain FastAPI")
    print(result)
    if args.out:
        args.out.write_text(result + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in ("plain-fastapi", "plain-tornado"):
        {"plain-fastapi": plain_fastapi, "plain-tornado": plain_tornado}[sys.argv[1]](sys.argv[2], int(sys.argv[3]),
                                                                                     int(sys.argv[4]))
    else:
        main()
