"""Load test of `cnnexp serve` against plain one-request-per-forward-pass endpoints of the same model.

    python benchmarks/serve_load.py [--run outputs/train/<olivetti lenet run>] [--seconds 12] [--rounds 3]
                                    [--clients 1 8 32] [--threads 1] [--out docs/results/serve_load.md]

Without --run it first trains the Olivetti LeNet (experiment=olivetti_lenet: nkerns [20,50], hidden 2000)
for 5 epochs (the weights do not change the speed). Servers, on 127.0.0.1:
  - cnnexp serve      the real command (micro-batching: max_batch 32, max_wait_ms 5)
  - cnnexp serve onnxruntime   the same command with backend=onnxruntime: the run exported by
                      `cnnexp export` (done first) and run by ONNX Runtime instead of PyTorch
  - plain FastAPI     a synchronous FastAPI endpoint under uvicorn, one forward pass per request
                      (FastAPI runs sync endpoints on its thread pool, so requests run side by side)
  - plain Tornado     a Tornado handler as in the age/gender tutorial, one forward pass per request
                      (needs `pip install tornado`; leave it out with --servers otherwise)
All three decode and score with the same code (cnnexp.serve.model.ServedModel), so the difference is
the serving. All three servers are started first (an idle server costs nothing); then for each number
of clients the servers take turns, --rounds times, each turn a one-second warm-up and --seconds/rounds
measured, with that many clients sending an Olivetti face (multipart, as curl -F does) back to back on
keep-alive connections. The table gives requests/s, latency percentiles, errors (any non-200 answer,
timeout or broken connection), the mean batch the answers report, and the server's CPU time per
request. The clients run in this process, on the same machine as the servers.
"""

import argparse
import asyncio
import io
import json
import os
import socket
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


# ---- the plain servers (run as `python serve_load.py plain-fastapi|plain-tornado RUN PORT THREADS`) ----
def served_model(run: str, threads: int):
    from cnnexp.config.compose import compose_config
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
def request_bytes(port: int, image: bytes) -> bytes:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"face.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
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


async def client(port: int, payload: bytes, start: float, stop: float, latencies: list, errors: list,
                 batches: list) -> None:
    """Requests back to back until `stop`; those begun after `start` are counted."""
    connection = None
    while (begun := time.perf_counter()) < stop:
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            status, body = await asyncio.wait_for(one_request(*connection, payload), REQUEST_TIMEOUT_S)
            ok = status == 200
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            ok, connection = False, None
        if begun >= start and ok:
            latencies.append(time.perf_counter() - begun)
            batches.append(json.loads(body)["images"][0]["batch"])
        elif begun >= start:
            errors.append(1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, pid: int, payload: bytes, clients: int, seconds: float) -> dict:
    """One measurement: latencies of the answered requests, errors, batch sizes, and the server's CPU
    seconds (a measure that other jobs on a shared machine disturb less than requests/s)."""
    latencies, errors, batches = [], [], []
    start = time.perf_counter() + WARMUP_S
    runs = asyncio.gather(*(client(port, payload, start, start + seconds, latencies, errors, batches)
                            for _ in range(clients)))
    await asyncio.sleep(WARMUP_S)
    cpu_start = cpu_seconds(pid)
    await runs
    return {"latencies": latencies, "errors": len(errors), "batches": batches, "cpu": cpu_seconds(pid) - cpu_start,
            "seconds": seconds}


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


def start(name: str, run: str, port: int, threads: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    if name.startswith("cnnexp serve"):
        backend = "onnxruntime" if name.endswith("onnxruntime") else "torch"
        command = [sys.executable, "-m", "cnnexp", "serve", f"run={run}", f"port={port}", f"device.threads={threads}",
                   "device=cpu", f"backend={backend}"]
    else:
        command = [sys.executable, __file__, name.replace(" ", "-").lower(), run, str(port), str(threads)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_healthy(proc, port)
    return proc


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


def train_run(folder: Path, threads: int) -> str:
    subprocess.run([sys.executable, "-m", "cnnexp", "train", "experiment=olivetti_lenet", "trainer.epochs=5",
                    f"device.threads={threads}", "device=cpu", f"hydra.run.dir={folder}"],
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


def table(rows: list[dict]) -> str:
    lines = ["| server | clients | requests/s | p50 ms | p95 ms | p99 ms | errors | mean batch | server CPU ms/request "
             "| requests/s vs plain FastAPI |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    plain = {r["clients"]: r["rps"] for r in rows if r["server"] == "plain FastAPI"}
    for r in rows:
        ratio = f"{r['rps'] / plain[r['clients']]:.2f}x" if plain.get(r["clients"]) else "-"
        lines.append(f"| {r['server']} | {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['errors']} | {r['mean_batch']:.1f} | {r['cpu_ms_per_request']:.2f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an Olivetti LeNet train run (default: train one for 5 epochs)")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per server and client count")
    parser.add_argument("--rounds", type=int, default=3, help="turns the servers take within those seconds")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of each server")
    parser.add_argument("--servers", nargs="+", default=["cnnexp serve", "cnnexp serve onnxruntime", "plain FastAPI",
                                                         "plain Tornado"])
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) and the rows (JSON) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or train_run(Path(scratch) / "run", args.threads)
        if "cnnexp serve onnxruntime" in args.servers:
            export_onnx(run)
        image, rows, servers = face_png(), [], {}
        try:
            for name in args.servers:
                port = free_port()
                servers[name] = (port, start(name, run, port, args.threads))
            for clients in args.clients:
                rounds = {name: [] for name in args.servers}
                for _ in range(args.rounds):  # taking turns, so a machine that gets busier slows all alike
                    for name, (port, proc) in servers.items():
                        rounds[name].append(run_loop(load(port, proc.pid, request_bytes(port, image), clients,
                                                          args.seconds / args.rounds)))
                for name in args.servers:
                    rows.append(summary(name, clients, rounds[name]))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            for _, proc in servers.values():
                stop(proc)
    print(table(rows))
    if args.out:
        args.out.write_text(table(rows) + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in ("plain-fastapi", "plain-tornado"):
        {"plain-fastapi": plain_fastapi, "plain-tornado": plain_tornado}[sys.argv[1]](sys.argv[2], int(sys.argv[3]),
                                                                                     int(sys.argv[4]))
    else:
        main()
