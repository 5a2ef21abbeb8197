"""cnnexp serve: the real server in a subprocess on 127.0.0.1, talked to over HTTP: /health before and
after loading, the same guesses as `cnnexp predict --json`, request batching, every bad request with
its status (and the server still answering), graceful SIGTERM; the page in headless Chromium. On a
network (host=0.0.0.0, still talked to through 127.0.0.1): the token, HTTPS with a self-signed
certificate, Prometheus metrics scraped by a real Prometheus, the JSON access log."""

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from cnnexp.cli import main
from conftest import photo_with_face
from cnnexp.data.sources.olivetti import embedded_gif, read_faces
from cnnexp.serve.batcher import MicroBatcher

SMALL = ("model.nkerns=[8,16]", "model.hidden=64", "trainer.epochs=12", "optimizer.lr=0.1", "trainer.batch_size=20",
        "device.threads=1")
FACES = read_faces(embedded_gif())
PASTED_AT = (200, 100, 188, 228)  # x, y, w, h of a face pasted on a background (Haar finds it)
START_S = 90  # longest wait for a server to answer /health 200
TOKEN = "tests-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`cnnexp serve` in a subprocess; `statuses` are the /health answers seen while it started. `tls`:
    talk HTTPS with this context; `headers`: sent with every request (a token)."""

    def __init__(self, run: Path | str, log: Path, *overrides: str, tls: ssl.SSLContext | None = None,
                 env: dict | None = None):
        self.port, self.tls, self.headers = free_port(), tls, {}
        env = {k: v for k, v in os.environ.items() if k not in ("CNNEXP_DEBUG", "CNNEXP_SERVE_TOKEN")} | (env or {})
        self.log_path = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cnnexp", "serve", f"run={run}", f"port={self.port}",
                                          "device.threads=1", *overrides], stdout=out, stderr=subprocess.STDOUT,
                                         env=env, cwd=log.parent)
        self.statuses = self.wait_ready()

    def wait_ready(self) -> list[int]:
        statuses, deadline = [], time.monotonic() + START_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                status = self.request("GET", "/health")[0]
            except OSError:
                time.sleep(0.02)
                continue
            statuses.append(status)
            if status == 200:
                return statuses
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"server did not become ready: {self.log_path.read_text()}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30) -> tuple[int, dict | str]:
        status, _, answer = self.exchange(method, path, body, headers, timeout)
        return status, answer

    def exchange(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 30) -> tuple[int, http.client.HTTPMessage, dict | str]:
        """(status, response headers, the JSON or text answer)."""
        if self.tls is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        else:
            connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls)
        try:
            connection.request(method, path, body=body, headers=self.headers | (headers or {}))
            response = connection.getresponse()
            data = response.read().decode()
            is_json = response.getheader("content-type", "").startswith("application/json")
            return response.status, response.headers, json.loads(data) if is_json else data
        finally:
            connection.close()

    def predict(self, files: list[tuple[str, bytes]], field: str = "image", headers: dict | None = None) -> tuple[int, dict]:
        body, content_type = multipart(files, field)
        return self.request("POST", "/predict", body, {"Content-Type": content_type} | (headers or {}))

    def raw(self, data: bytes, timeout: float = 20) -> str:
        """Send bytes on a raw connection and read the response status line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            return sock.recv(65536).decode(errors="replace").split("\r\n")[0]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def multipart(files: list[tuple[str, bytes]], field: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "faces"
    assert main(["train", *SMALL, f"hydra.run.dir={folder}"]) == 0
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """face57.png, face123.png (Olivetti faces), pasted.jpg (a face on a 640x480 background), blank.png."""
    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(FACES[57]).save(folder / "face57.png")
    Image.fromarray(FACES[123]).save(folder / "face123.png")
    x, y, w, h = PASTED_AT
    background = Image.new("RGB", (640, 480), (120, 130, 140))
    background.paste(Image.fromarray(FACES[123]).resize((w, h), Image.Resampling.BILINEAR), (x, y))
    background.save(folder / "pasted.jpg", quality=95)
    Image.new("RGB", (300, 200), (200, 200, 200)).save(folder / "blank.png")
    return folder


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def server(request, run, tmp_path_factory):
    """The service on PyTorch, then on ONNX Runtime (the run exported by `cnnexp export`): every test
    of it holds for both backends."""
    exported(run, request.param)
    started = Server(run, tmp_path_factory.mktemp("serve") / "serve.log", "topk=3", "read_timeout_s=1",
                     "max_upload_mb=0.5", "max_wait_ms=20", f"backend={request.param}")
    yield started
    assert started.stop() == 0


def exported(run: Path, backend: str) -> None:
    """For backend=onnxruntime: the run's export/model.onnx, made by `cnnexp export` once."""
    if backend == "onnxruntime" and not (run / "export" / "model.onnx").exists():
        assert main(["export", f"run={run}"]) == 0


@pytest.fixture(scope="module")
def face_server(run, tmp_path_factory):
    started = Server(run, tmp_path_factory.mktemp("serve-face") / "serve.log", "detect_face=true")
    yield started
    assert started.stop() == 0


def predict_json(run: Path, images: Path, *overrides: str, capsys) -> dict:
    """`cnnexp predict --json` rows by file name."""
    capsys.readouterr()
    assert main(["predict", f"run={run}", f"image={images}", "--json", *overrides]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {Path(row["image"]).name: row for row in rows}


def same_guesses(served: list[dict], printed: list[dict]) -> bool:
    """The same labels in the same order, the same probabilities (both rounded to 4 places; a batch
    of another size may move the last float bit)."""
    return ([g["label"] for g in served] == [g["label"] for g in printed]
            and all(abs(a["prob"] - b["prob"]) <= 1e-4 for a, b in zip(served, printed)))


def test_health_is_503_until_loaded_then_200(server):
    assert server.statuses[-1] == 200
    assert 503 in server.statuses and set(server.statuses[:-1]) == {503}, server.statuses
    assert server.request("GET", "/health") == (200, {"status": "ok"})
    status, info = server.request("GET", "/info")
    assert status == 200 and info["model"] == "lenet" and len(info["class_names"]) == 40
    assert info["image_shape"] == [1, 57, 47] and info["metrics"]["epochs_run"] == 12
    assert info["options"]["topk"] == 3 and info["threads"] == 1 and info["backend"] in ("torch", "onnxruntime")


def test_predictions_equal_cnnexp_predict(server, run, images, capsys):
    printed = predict_json(run, images, "topk=3", capsys=capsys)
    names = ["face57.png", "face123.png", "pasted.jpg", "blank.png"]
    status, answer = server.predict([(name, (images / name).read_bytes()) for name in names])
    assert status == 200
    assert [row["image"] for row in answer["images"]] == names
    for row in answer["images"]:
        assert len(row["top"]) == 3 and same_guesses(row["top"], printed[row["image"]]["top"])
        assert row["batch"] == 4 and row["model_ms"] > 0  # one request's images share one forward pass
    status, raw = server.request("POST", "/predict", (images / "face57.png").read_bytes(), {"Content-Type": "image/png"})
    assert status == 200 and same_guesses(raw["images"][0]["top"], printed["face57.png"]["top"])


def test_face_box_and_no_face_equal_cnnexp_predict(face_server, run, images, capsys):
    printed = predict_json(run, images, "detect_face=true", capsys=capsys)
    status, answer = face_server.predict([(n, (images / n).read_bytes()) for n in ("pasted.jpg", "blank.png")])
    assert status == 200
    pasted, blank = answer["images"]
    assert pasted["face"] == printed["pasted.jpg"]["face"] and same_guesses(pasted["top"], printed["pasted.jpg"]["top"])
    x, y, w, h = pasted["face"]
    assert abs(x + w / 2 - (PASTED_AT[0] + PASTED_AT[2] / 2)) < 40 and abs(y + h / 2 - (PASTED_AT[1] + PASTED_AT[3] / 2)) < 60
    assert blank == {"image": "blank.png", "top": None, "face": None, "reason": "no face found"}


def test_concurrent_requests_share_forward_passes(server, images):
    faces = [(f"face{i}.png", (images / f"face{i}.png").read_bytes()) for i in (57, 123)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: server.predict([faces[i % 2]]), range(48)))
    assert all(status == 200 for status, _ in answers)
    tops = {answer["images"][0]["image"]: answer["images"][0]["top"] for _, answer in answers}
    for status, answer in answers:
        assert answer["images"][0]["top"] == tops[answer["images"][0]["image"]]
    assert max(answer["images"][0]["batch"] for _, answer in answers) > 1


def test_one_bad_image_fails_only_its_request(server, images):
    good = ("face57.png", (images / "face57.png").read_bytes())
    requests = [[good], [("broken.png", b"\x89PNG\r\n\x1a\n not really")], [good], [good, ("notes.txt", b"hello")]]
    with ThreadPoolExecutor(4) as pool:
        statuses = [status for status, _ in pool.map(server.predict, requests)]
    assert statuses == [200, 400, 200, 400]


def test_batcher_isolates_a_failing_item():
    """A forward pass that fails for one item is retried item by item: only that item's caller fails."""
    passes = []

    def classify(items):
        passes.append(list(items))
        if "bad" in items:
            raise ValueError("cannot classify 'bad'")
        return [item * 2 for item in items], 0.001

    async def scenario():
        batcher = MicroBatcher(classify, max_batch=8, max_wait_s=0.05)
        task = asyncio.create_task(batcher.run())
        results = await asyncio.gather(*(batcher.submit(item) for item in (1, 2, "bad", 4)), return_exceptions=True)
        task.cancel()
        batcher.close()
        return results

    results = asyncio.run(scenario())
    assert [r[0] for r in results if not isinstance(r, Exception)] == [2, 4, 8]
    assert isinstance(results[2], ValueError)
    assert passes[0] == [1, 2, "bad", 4] and len(passes) == 5


def chunked(size: int) -> bytes:
    return (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n" % 65536 + b"\0" * 65536 + b"\r\n" for _ in range(size // 65536)))


@pytest.mark.parametrize("send, status, error", [
    (lambda s, i: s.predict([("notes.txt", b"plain text, not a picture")]), 400, "cannot decode notes.txt"),
    (lambda s, i: s.request("POST", "/predict", b"", {"Content-Type": "image/jpeg"}), 400, "body is empty"),
    (lambda s, i: s.predict([("face57.png", (i / "face57.png").read_bytes())], field="photo"), 400,
     "no file in the multipart field 'image'"),
    (lambda s, i: s.request("POST", "/predict", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}), 415,
     "not accepted"),
    (lambda s, i: s.request("POST", "/predict", b"--x\r\nbroken", {"Content-Type": "multipart/form-data"}), 400,
     "multipart body cannot be read"),
    (lambda s, i: s.request("GET", "/predict"), 405, "Method Not Allowed"),
    (lambda s, i: s.request("POST", "/../../etc/passwd"), 404, "Not Found"),
    (lambda s, i: s.request("POST", "/predict", b"\0" * 600_000, {"Content-Type": "image/png"}), 413,
     "larger than max_upload_mb=0.5"),
])
def test_bad_request_gets_its_status_and_the_server_goes_on(server, images, send, status, error):
    answer_status, answer = send(server, images)
    assert answer_status == status and error in answer["error"], answer
    assert server.request("GET", "/health")[0] == 200
    assert server.predict([("face57.png", (images / "face57.png").read_bytes())])[0] == 200


def test_upload_limit_is_checked_while_reading(server, images):
    """A chunked body (no Content-Length) is refused once it passes the limit, before it ends."""
    status_line = server.raw(chunked(2 * 1024 * 1024))  # 2 MB sent, the body never terminated
    assert status_line == "HTTP/1.1 413 Request Entity Too Large"
    assert server.predict([("face57.png", (images / "face57.png").read_bytes())])[0] == 200


@pytest.mark.parametrize("sent", [
    b"",  # connects and sends nothing
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty",  # headers cut short
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n\x89PNG",  # body
], ids=["nothing", "headers", "body"])
def test_stalled_request_times_out(server, images, sent):
    started = time.monotonic()
    status_line = server.raw(sent)  # read_timeout_s=1
    assert status_line == "HTTP/1.1 408 Request Timeout" and time.monotonic() - started < 10
    assert server.request("GET", "/health")[0] == 200


def test_sigterm_finishes_the_request_in_flight_and_exits_0(run, images, tmp_path):
    server = Server(run, tmp_path / "serve.log")
    data = (images / "face57.png").read_bytes()
    body, content_type = multipart([("face57.png", data)], "image")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(body[100:])
        response = sock.makefile("rb").read().decode()
    assert response.startswith("HTTP/1.1 200 OK") and '"top":[{"label":"person_' in response
    assert server.proc.wait(timeout=60) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert f"cnnexp serve: http://127.0.0.1:{server.port} (the page at /" in server.log_path.read_text()


@pytest.mark.parametrize("make_run, message", [
    (lambda folder: None, "run={run} is not a folder; give a train run folder such as outputs/train/<run>"),
    (lambda folder: (folder.mkdir(), (folder / "config.yaml").write_text("seed: 0\n")),
     "no best checkpoint in the run folder ({run}/checkpoints/best.pt is missing); pick a finished train run"),
], ids=["missing", "no checkpoint"])
def test_run_that_cannot_load_is_one_line_exit_2_before_listening(tmp_path, make_run, message):
    """The line is all the command prints: the run is checked before uvicorn starts and takes the port."""
    run = tmp_path / "run"
    make_run(run)
    proc = subprocess.run([sys.executable, "-m", "cnnexp", "serve", f"run={run}", f"port={free_port()}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {message.format(run=run)}\n"


def test_port_in_use_is_one_line_exit_2(cnnexp, run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cnnexp("serve", f"run={run}", f"port={port}")
    assert result.code == 2
    assert result.err == f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another port= (or host=)\n"


@pytest.mark.parametrize("override, message", [("max_batch=0", "max_batch=0 must be a whole number > 0"),
                                               ("port=70000", "port=70000 must be a whole number"),
                                               ("topk=0", "topk=0 must be an integer >= 1")])
def test_bad_option_is_refused_before_listening(cnnexp, run, override, message):
    result = cnnexp("serve", f"run={run}", override)
    assert result.code == 2 and message in result.err


# ---- named runs: run={faces:<run>,gender:<run>} ----------------------------------------------------
UTK_AT = (220, 140)  # where photo_with_face pastes the 200x200 UTKFace face


@pytest.fixture(scope="module")
def photos(images):
    """images/ plus utk.jpg, a real UTKFace face on a 640x480 background."""
    photo_with_face(images / "utk.jpg", UTK_AT)
    return images


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def runs_server(request, run, gender_run, tmp_path_factory):
    """Two named runs (1x57x47 grey LeNet, 3x32x32 colour small CNN) behind one service, with faces; a
    token given (token=), so every request of these tests passes the gate with it."""
    for folder in (run, gender_run):
        exported(folder, request.param)
    started = Server(f"{{faces:{run},gender:{gender_run}}}", tmp_path_factory.mktemp("serve-runs") / "serve.log",
                     "detect_face=true", "topk=3", f"backend={request.param}", f"token={TOKEN}")
    assert started.request("GET", "/info")[0] == 401
    started.headers = {"Authorization": f"Bearer {TOKEN}"}
    yield started
    assert started.stop() == 0


def test_named_runs_answer_as_each_run_alone(runs_server, run, gender_run, photos, capsys):
    """One request, each photo answered by both runs: the face box and each run's guesses are those of
    `cnnexp predict` with that run alone; a photo without a face gets face null and the reason."""
    alone = {name: predict_json(folder, photos, "detect_face=true", "topk=3", capsys=capsys)
             for name, folder in (("faces", run), ("gender", gender_run))}
    names = ["utk.jpg", "pasted.jpg", "blank.png"]
    status, answer = runs_server.predict([(name, (photos / name).read_bytes()) for name in names])
    assert status == 200
    utk, pasted, blank = answer["images"]
    for row in (utk, pasted):
        assert list(row) == ["image", "face", "faces", "gender"]
        for name in ("faces", "gender"):
            single = alone[name][row["image"]]
            assert row["face"] == single["face"] and same_guesses(row[name]["top"], single["top"]), (name, row)
            assert row[name]["batch"] == 2 and row[name]["model_ms"] > 0  # both photos in one pass per run
    assert {g["label"] for g in utk["gender"]["top"]} == {"F", "M"}
    x, y, w, h = utk["face"]
    assert abs(x + w / 2 - (UTK_AT[0] + 100)) < 30 and abs(y + h / 2 - (UTK_AT[1] + 100)) < 30
    assert blank == {"image": "blank.png", "face": None, "reason": "no face found"}


def test_named_runs_info_lists_each_run(runs_server, run, gender_run):
    status, info = runs_server.request("GET", "/info")
    assert status == 200 and list(info) == ["runs"] and list(info["runs"]) == ["faces", "gender"]
    faces, gender = info["runs"]["faces"], info["runs"]["gender"]
    assert (faces["run"], faces["model"], faces["image_shape"]) == (str(run), "lenet", [1, 57, 47])
    assert (gender["run"], gender["model"], gender["image_shape"]) == (str(gender_run), "small_cnn", [3, 32, 32])
    assert gender["class_names"] == ["F", "M"] and gender["options"]["detect_face"] is True


@pytest.mark.parametrize("named, message", [
    ("{{faces:{run},gender:{missing}}}", "run.gender={missing} is not a folder; give a train run folder such as "
                                         "outputs/train/<run>"),
    ("{{faces:{missing},gender:{run}}}", "run.faces={missing} is not a folder; give a train run folder such as "
                                         "outputs/train/<run>"),
    ("{{faces:{run},gender:{empty}}}", "run.gender: {empty} is not a cnnexp run folder (no config.yaml); give "
                                       "outputs/train/<run>"),
], ids=["second", "first", "not a run"])
def test_named_run_that_cannot_load_is_one_line_naming_its_key(run, tmp_path, named, message):
    """The line is all the command prints (uvicorn never starts), exit 2."""
    paths = {"run": run, "missing": tmp_path / "missing", "empty": tmp_path}
    proc = subprocess.run([sys.executable, "-m", "cnnexp", "serve", f"run={named.format(**paths)}",
                           f"port={free_port()}"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, f"error: {message.format(**paths)}\n")


@pytest.mark.parametrize("named, message", [
    ("{}", "error: run={} names no runs; give one run folder (run=outputs/train/<run>) or named runs"),
    ("{2nd:RUN}", "error: run.2nd: '2nd' cannot name a run; use letters, digits and _ starting with a letter"),
    ("{face:RUN}", "error: run.face: 'face' cannot name a run;"),
    ("[RUN,RUN]", "error: run= takes one run folder, or named runs as run={age:"),
])
def test_bad_named_runs_are_one_line(cnnexp, run, named, message):
    result = cnnexp("serve", f"run={named.replace('RUN', str(run))}", f"port={free_port()}")
    assert result.code == 2 and result.err.startswith(message) and result.err.count("\n") == 1, result.err


# ---- the page in a real browser ------------------------------------------------------------------
def test_page_in_headless_chromium(face_server, images, tmp_path):
    """Pick the pasted face in the page's file input; the page shows the guesses and the face box."""
    from cdp_browser import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[dev]')")
    status, served = face_server.predict([("pasted.jpg", (images / "pasted.jpg").read_bytes())])
    with Chromium(tmp_path / "profile") as browser:
        browser.open(f"http://127.0.0.1:{face_server.port}/")
        browser.wait_for("document.querySelector('#info').textContent.startsWith('model lenet')")
        browser.set_file("#file", images / "pasted.jpg")
        browser.wait_for("document.querySelectorAll('#guesses li').length > 0")
        shown = browser.evaluate("[...document.querySelectorAll('#guesses li')].map(li => "
                                 "[li.querySelector('.label').textContent, li.querySelector('.prob').textContent])")
        canvas = browser.evaluate("[document.querySelector('#photo').width, document.querySelector('#photo').height]")
        box_pixel = browser.evaluate(box_colour_script(served["images"][0]["face"]))
        screenshot = browser.screenshot(tmp_path / "serve.png")
    assert shown == [[g["label"], f"{g['prob']:.4f}"] for g in served["images"][0]["top"]]
    assert canvas == [420, 315]  # 640x480 shown at most 420 wide
    assert box_pixel == [46, 230, 107]  # the face box's green on the box's top edge
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("CNNEXP_SERVE_SCREENSHOT"):
        Path(os.environ["CNNEXP_SERVE_SCREENSHOT"]).write_bytes(screenshot.read_bytes())


def test_page_shows_every_named_guess_and_the_face_box(runs_server, photos, tmp_path):
    """Named runs on the page: a list of guesses under each run's name, and the face box on the photo."""
    from cdp_browser import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[dev]')")
    status, served = runs_server.predict([("utk.jpg", (photos / "utk.jpg").read_bytes())])
    with Chromium(tmp_path / "profile") as browser:
        browser.open(f"http://127.0.0.1:{runs_server.port}/#token={TOKEN}")
        browser.wait_for("document.querySelector('#info').textContent.startsWith('faces: model lenet')")
        info = browser.evaluate("document.querySelector('#info').textContent")
        browser.set_file("#file", photos / "utk.jpg")
        browser.wait_for("document.querySelectorAll('#guesses li.run').length > 0")
        shown = browser.evaluate("[...document.querySelectorAll('#guesses li.run')].map(run => [run.dataset.run, "
                                 "[...run.querySelectorAll('li')].map(li => [li.querySelector('.label').textContent, "
                                 "li.querySelector('.prob').textContent])])")
        box_pixel = browser.evaluate(box_colour_script(served["images"][0]["face"]))
        screenshot = browser.screenshot(tmp_path / "serve-runs.png")
    assert "; gender: model small_cnn" in info and info.endswith("face detection on")
    answer = served["images"][0]
    assert shown == [[name, [[g["label"], f"{g['prob']:.4f}"] for g in answer[name]["top"]]] for name in ("faces", "gender")]
    assert box_pixel == [46, 230, 107]
    if os.environ.get("CNNEXP_SERVE_RUNS_SCREENSHOT"):
        Path(os.environ["CNNEXP_SERVE_RUNS_SCREENSHOT"]).write_bytes(screenshot.read_bytes())


def box_colour_script(face: list[int]) -> str:
    """The RGB of the canvas pixel in the middle of the face box's top edge."""
    x, y, w, _ = face
    scale = 420 / 640
    return (f"Array.from(document.querySelector('#photo').getContext('2d')"
            f".getImageData({round((x + w / 2) * scale)}, {round(y * scale)}, 1, 1).data.slice(0, 3))")


@pytest.mark.slow
def test_two_workers_answer_and_stop_with_exit_0(run, images, tmp_path):
    """workers=2: uvicorn's supervisor, each worker loading the run; SIGTERM stops them all, exit 0. Off
    loopback both take the one token printed once, and /metrics from either adds up both workers."""
    server = Server(run, tmp_path / "serve.log", "workers=2", "host=0.0.0.0")
    assert server.statuses == [200]  # a worker takes connections only once its model is loaded
    _, token = printed_token(server)
    assert {server.request("GET", "/info")[0] for _ in range(8)} == {401}
    server.headers = {"Authorization": f"Bearer {token}"}
    answers = [server.predict([("face57.png", (images / "face57.png").read_bytes())]) for _ in range(8)]
    assert {status for status, _ in answers} == {200}
    assert len({json.dumps(answer["images"][0]["top"]) for _, answer in answers}) == 1
    for _ in range(4):  # each scrape lands on either worker
        metrics = scrape(server)
        assert requests_count(metrics, "/predict", 200) == 8 and requests_count(metrics, "/info", 401) == 8
        assert metrics[("cnnexp_batch_size_count", (("run", "run"),))] == 8
    assert server.stop() == 0
    log = server.log_path.read_text()
    assert log.count("ready on /predict") == 2 and len([line for line in log.splitlines() if token in line]) == 1
    assert f"cnnexp serve: http://0.0.0.0:{server.port} (the page at /" in log


def test_onnxruntime_backend_without_an_export_is_one_line(cnnexp, run, tmp_path):
    missing = tmp_path / "none.onnx"
    result = cnnexp("serve", f"run={run}", "backend=onnxruntime", f"onnx={missing}", f"port={free_port()}")
    assert result.code == 2
    assert result.err == (f"error: backend=onnxruntime needs {missing} and its JSON; run `cnnexp export run={run}` "
                          "first (or give onnx=<file>)\n")


# ---- on a network: the token, HTTPS, metrics, the access log --------------------------------------
PRINTED = re.compile(r"(https?)://127\.0\.0\.1:(\d+)/#token=([A-Za-z0-9_-]+)")


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def net_server(request, run, tmp_path_factory):
    """host=0.0.0.0 with no token given: the service makes one and prints it; access_log=json."""
    exported(run, request.param)
    started = Server(run, tmp_path_factory.mktemp("serve-net") / "serve.log", "host=0.0.0.0", "access_log=json",
                     f"backend={request.param}")
    yield started
    assert started.stop() == 0


def printed_token(server: Server) -> tuple[str, str]:
    """(the page's URL at 127.0.0.1 with the token, the token) from the service's start lines."""
    found = PRINTED.search(server.log_path.read_text())
    assert found and int(found[2]) == server.port, server.log_path.read_text()
    return found[0], found[3]


def scrape(server: Server) -> dict[tuple, float]:
    """/metrics as {(sample name, sorted label items): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = server.request("GET", "/metrics")
    assert status == 200, text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def requests_count(metrics: dict, route: str, status: int) -> float:
    return metrics.get(("cnnexp_requests_total", (("route", route), ("status", str(status)))), 0.0)


def test_network_host_needs_the_printed_token(net_server, run, images, capsys):
    """No token or a wrong one: 401, a JSON error and WWW-Authenticate: Bearer on /predict, /info and /metrics;
    /health stays open; the printed token gets today's answers. The token is in one start line only (the
    access log has the requests, never the token)."""
    url, token = printed_token(net_server)
    face = [("face57.png", (images / "face57.png").read_bytes())]
    body, content_type = multipart(face, "image")
    for method, path in (("POST", "/predict"), ("GET", "/info"), ("GET", "/metrics")):
        for sent, error, challenge in (({}, "needs a token", 'Bearer realm="cnnexp"'),
                                       ({"Authorization": f"Bearer {token}x"}, "is not this service's", "invalid_token"),
                                       ({"Authorization": f"Basic {token}"}, "is not this service's", "invalid_token")):
            status, headers, answer = net_server.exchange(method, path, body if method == "POST" else None,
                                                          {"Content-Type": content_type} | sent)
            assert status == 401 and error in answer["error"] and challenge in headers["WWW-Authenticate"], (path, answer)
    assert net_server.request("GET", "/health") == (200, {"status": "ok"})
    printed = predict_json(run, images, capsys=capsys)
    net_server.headers = {"Authorization": f"Bearer {token}"}
    status, answer = net_server.predict(face)
    assert status == 200 and same_guesses(answer["images"][0]["top"], printed["face57.png"]["top"])
    assert net_server.request("GET", "/info")[1]["model"] == "lenet"
    assert requests_count(scrape(net_server), "/predict", 401) >= 3
    net_server.headers = {}
    log = net_server.log_path.read_text().splitlines()
    assert [line for line in log if token in line] == [next(line for line in log if url in line)]
    access = [json.loads(line) for line in log if line.startswith("{")]
    assert {"time", "method", "route", "status", "latency_ms", "images", "client"} == set(access[-1])
    predicted = [entry for entry in access if entry["route"] == "/predict" and entry["status"] == 200][-1]
    assert predicted["images"] == 1 and predicted["client"] == "127.0.0.1" and predicted["latency_ms"] > 0


@pytest.mark.parametrize("overrides, env, open_line", [
    (("host=0.0.0.0", "token=none"), {}, True),
    ((f"token={TOKEN}",), {}, False),
    ((), {"CNNEXP_SERVE_TOKEN": TOKEN}, False),
], ids=["none off loopback", "token= on loopback", "environment on loopback"])
def test_token_none_opens_and_a_given_token_closes(run, images, tmp_path, overrides, env, open_line):
    server = Server(run, tmp_path / "serve.log", *overrides, env=env)
    try:
        face = [("face57.png", (images / "face57.png").read_bytes())]
        assert server.predict(face)[0] == (200 if open_line else 401)
        assert server.predict(face, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    finally:
        assert server.stop() == 0
    log = server.log_path.read_text()
    assert ("open to anyone who can reach the port" in log) == open_line and TOKEN not in log


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """(cert.pem, key.pem, other-key.pem): a self-signed certificate for 127.0.0.1 and localhost."""
    pytest.importorskip("cryptography", reason="cryptography is not installed (pip install -e '.[dev]')")
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cnnexp serve test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for file, private in (("key.pem", key), ("other-key.pem", other)):
        (folder / file).write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem", folder / "other-key.pem"


def test_https_with_a_self_signed_certificate(run, images, tmp_path, certificate):
    """The page and /predict over TLS, verified against the certificate; plain HTTP to the port gets no
    prediction; the printed URL is https."""
    cert, key, _ = certificate
    server = Server(run, tmp_path / "serve.log", "host=0.0.0.0", f"tls_cert={cert}", f"tls_key={key}",
                    tls=ssl.create_default_context(cafile=str(cert)))
    try:
        url, token = printed_token(server)
        assert url.startswith(f"https://127.0.0.1:{server.port}/")
        status, page = server.request("GET", "/")
        assert status == 200 and "<title>cnnexp serve</title>" in page
        face = [("face57.png", (images / "face57.png").read_bytes())]
        status, answer = server.predict(face, headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and answer["images"][0]["top"][0]["label"].startswith("person_")
        body, content_type = multipart(face, "image")
        plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            plain.request("POST", "/predict", body, {"Content-Type": content_type, "Authorization": f"Bearer {token}"})
            plain_status = plain.getresponse().status
        except (OSError, http.client.HTTPException):
            plain_status = None
        finally:
            plain.close()
        assert plain_status is None  # the connection closes without an answer
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("overrides, env, message", [
    (("tls_cert={missing}", "tls_key={key}"), {}, "tls_cert={missing} cannot be read (No such file or directory); "
                                                    "give the certificate's PEM file"),
    (("tls_cert={key}", "tls_key={key}"), {}, "tls_cert={key} holds no PEM certificate ("),
    (("tls_key={key}",), {}, "tls_key={key} needs its certificate: give tls_cert= too (tls_cert=cert.pem tls_key=key.pem)"),
    (("tls_cert={cert}", "tls_key={other}"), {}, "tls_key={other} does not match tls_cert={cert}; give the private key "
                                                 "the certificate was made for"),
    (("tls_cert={cert}",), {}, "tls_cert={cert} holds no private key; give the certificate's key as tls_key=key.pem\n"),
    (("tls_cert={cert}", "tls_key={cert}"), {}, "tls_key={cert} is not an unencrypted PEM private key; give the "
                                                "certificate's key (decrypt an encrypted one first: openssl pkey"),
    (("token=",), {}, "token= is empty; give a long random token (e.g. token=$(openssl rand -hex 24)), leave it out "
                      "for a generated one, or token=none for a service without one"),
    (("host=0.0.0.0",), {"CNNEXP_SERVE_TOKEN": ""}, "CNNEXP_SERVE_TOKEN is empty; give a long random token"),
    (("token='two words'",), {}, "token= holds a space or a character other than visible ASCII"),
    (("access_log=xml",), {}, "access_log=xml is not one of: false, true (uvicorn's text lines), json"),
], ids=["missing cert", "not a cert", "key without cert", "other key", "no key", "not a key", "empty token", "empty environment",
        "space in token", "access log"])
def test_bad_certificate_or_token_is_one_line_and_nothing_starts(cnnexp, run, certificate, monkeypatch, tmp_path,
                                                                 overrides, env, message):
    cert, key, other = certificate
    paths = {"cert": cert, "key": key, "other": other, "missing": tmp_path / "missing.pem"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    result = cnnexp("serve", f"run={run}", f"port={port}", *(o.format(**paths) for o in overrides))
    assert result.code == 2 and result.err.startswith(f"error: {message.format(**paths)}"), result.err
    assert result.err.count("\n") == 1 and result.out == ""
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_metrics_count_requests_refusals_and_batches(face_server, images):
    """/metrics (loopback: no token) after a photo with a face, one without, a text file and too large a
    body: each request by route and status, each refusal by reason, the forward pass and the model."""
    before = scrape(face_server)
    photos = [(name, (images / name).read_bytes()) for name in ("pasted.jpg", "blank.png")]
    assert face_server.predict(photos)[0] == 200
    assert face_server.predict([("notes.txt", b"hello")])[0] == 400
    assert face_server.raw(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                           b"Content-Length: 99999999\r\n\r\n") == "HTTP/1.1 413 Request Entity Too Large"
    after = scrape(face_server)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert [grew("cnnexp_requests_total", route="/predict", status=s) for s in ("200", "400", "413")] == [1, 1, 1]
    assert grew("cnnexp_requests_total", route="/metrics", status="200") == 1  # the first scrape
    assert [grew("cnnexp_images_refused_total", reason=r) for r in ("too_large", "not_an_image", "no_face")] == [1, 1, 1]
    assert grew("cnnexp_batch_size_count", run="run") == 1 and grew("cnnexp_batch_size_sum", run="run") == 1
    assert grew("cnnexp_model_seconds_count", run="run") == 1
    assert grew("cnnexp_request_seconds_count", route="/predict") == 3
    info = face_server.request("GET", "/info")[1]
    model = [dict(labels) for (name, labels), value in after.items() if name == "cnnexp_model_info" and value == 1]
    assert model == [{"run": "run", "folder": info["run"], "checkpoint": info["checkpoint"], "epoch": str(info["epoch"]),
                      "model": "lenet", "backend": "torch"}]


def test_named_runs_have_their_own_model_metrics(runs_server, photos):
    before = scrape(runs_server)
    assert runs_server.predict([("utk.jpg", (photos / "utk.jpg").read_bytes())])[0] == 200
    after = scrape(runs_server)
    for name in ("faces", "gender"):
        key = ("cnnexp_batch_size_count", (("run", name),))
        assert after[key] - before.get(key, 0.0) == 1
    assert sorted(dict(labels)["run"] for (name, labels) in after if name == "cnnexp_model_info") == ["faces", "gender"]


def test_prometheus_scrapes_the_service_with_its_token(net_server, images, tmp_path):
    """A real Prometheus (Debian's package) scrapes /metrics with the printed token every second; its
    query API gives back the count of /predict requests after the test's three."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install -y prometheus)")
    _, token = printed_token(net_server)
    net_server.headers = {"Authorization": f"Bearer {token}"}
    try:
        before = requests_count(scrape(net_server), "/predict", 200)
        for _ in range(3):
            assert net_server.predict([("face57.png", (images / "face57.png").read_bytes())])[0] == 200
    finally:
        net_server.headers = {}
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": "cnnexp", "authorization": {"type": "Bearer", "credentials": token},
                                  "static_configs": [{"targets": [f"127.0.0.1:{net_server.port}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        seen = prometheus_value(port, 'cnnexp_requests_total{job="cnnexp",route="/predict",status="200"}', before + 3)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert seen == before + 3, (tmp_path / "prometheus.log").read_text()[-3000:]


def prometheus_value(port: int, query: str, wanted: float, wait_s: float = 60) -> float | None:
    """The query's value from Prometheus' HTTP API, polled until it equals `wanted` (or the wait ends)."""
    from urllib.parse import quote

    value, deadline = None, time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", f"/api/v1/query?query={quote(query)}")
            result = json.loads(connection.getresponse().read())["data"]["result"]
            value = float(result[0]["value"][1]) if result else None
        except (OSError, ValueError, KeyError):
            pass
        if value == wanted:
            return value
        time.sleep(0.5)
    return value


def test_page_through_the_printed_url(net_server, images, tmp_path):
    """The printed URL in headless Chromium: the page takes the token from the URL (and out of the address
    bar) and uses it for /info and /predict."""
    from cdp_browser import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[dev]')")
    url, token = printed_token(net_server)
    net_server.headers = {"Authorization": f"Bearer {token}"}
    status, served = net_server.predict([("face57.png", (images / "face57.png").read_bytes())])
    net_server.headers = {}
    with Chromium(tmp_path / "profile") as browser:
        browser.open(url)
        browser.wait_for("document.querySelector('#info').textContent.startsWith('model lenet')")
        address = browser.evaluate("location.href")
        browser.set_file("#file", images / "face57.png")
        browser.wait_for("document.querySelectorAll('#guesses li').length > 0")
        shown = browser.evaluate("[...document.querySelectorAll('#guesses li')].map(li => "
                                 "[li.querySelector('.label').textContent, li.querySelector('.prob').textContent])")
    assert address == f"http://127.0.0.1:{net_server.port}/" and token not in address
    assert shown == [[g["label"], f"{g['prob']:.4f}"] for g in served["images"][0]["top"]]
