"""cnnexp serve: the real server in a subprocess on 127.0.0.1, talked to over HTTP: /health before and
after loading, the same guesses as `cnnexp predict --json`, request batching, every bad request with
its status (and the server still answering), graceful SIGTERM; the page in headless Chromium."""

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from cnnexp.cli import main
from conftest import GENDER_RUN, photo_with_face, utkface_genders
from cnnexp.data.sources.olivetti import embedded_gif, read_faces
from cnnexp.serve.batcher import MicroBatcher

SMALL = ("model.nkerns=[8,16]", "model.hidden=64", "trainer.epochs=12", "optimizer.lr=0.1", "trainer.batch_size=20",
        "device.threads=1")
FACES = read_faces(embedded_gif())
PASTED_AT = (200, 100, 188, 228)  # x, y, w, h of a face pasted on a background (Haar finds it)
START_S = 90  # longest wait for a server to answer /health 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`cnnexp serve` in a subprocess; `statuses` are the /health answers seen while it started."""

    def __init__(self, run: Path | str, log: Path, *overrides: str):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "CNNEXP_DEBUG"}
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
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read().decode()
            is_json = response.getheader("content-type", "").startswith("application/json")
            return response.status, json.loads(data) if is_json else data
        finally:
            connection.close()

    def predict(self, files: list[tuple[str, bytes]], field: str = "image") -> tuple[int, dict]:
        body, content_type = multipart(files, field)
        return self.request("POST", "/predict", body, {"Content-Type": content_type})

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


@pytest.fixture(scope="module")
def gender_run(tmp_path_factory):
    """A colour run of another input size and normalisation than `run`: 32x32 RGB UTKFace faces, F or M."""
    root = utkface_genders(tmp_path_factory.mktemp("utkface") / "genders")
    folder = tmp_path_factory.mktemp("runs") / "gender"
    assert main(["train", *GENDER_RUN, f"dataset.root={root}", f"hydra.run.dir={folder}"]) == 0
    return folder


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def server(request, run, tmp_path_factory):
    """The service on PyTorch, then on ONNX Runtime (the run exported by `cnnexp export`): every test
    of it holds for both backends."""
    if request.param == "onnxruntime" and not (run / "export" / "model.onnx").exists():
        assert main(["export", f"run={run}"]) == 0
    started = Server(run, tmp_path_factory.mktemp("serve") / "serve.log", "topk=3", "read_timeout_s=1",
                     "max_upload_mb=0.5", "max_wait_ms=20", f"backend={request.param}")
    yield started
    assert started.stop() == 0


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
    """Two named runs (1x57x47 grey LeNet, 3x32x32 colour small CNN) behind one service, with faces."""
    if request.param == "onnxruntime":
        for folder in (run, gender_run):
            if not (folder / "export" / "model.onnx").exists():
                assert main(["export", f"run={folder}"]) == 0
    started = Server(f"{{faces:{run},gender:{gender_run}}}", tmp_path_factory.mktemp("serve-runs") / "serve.log",
                     "detect_face=true", "topk=3", f"backend={request.param}")
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
        browser.open(f"http://127.0.0.1:{runs_server.port}/")
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
    """workers=2: uvicorn's supervisor, each worker loading the run; SIGTERM stops them all, exit 0."""
    server = Server(run, tmp_path / "serve.log", "workers=2")
    assert server.statuses == [200]  # a worker takes connections only once its model is loaded
    answers = [server.predict([("face57.png", (images / "face57.png").read_bytes())]) for _ in range(8)]
    assert {status for status, _ in answers} == {200}
    assert len({json.dumps(answer["images"][0]["top"]) for _, answer in answers}) == 1
    assert server.stop() == 0
    assert server.log_path.read_text().count("ready on /predict") == 2
    assert f"cnnexp serve: http://127.0.0.1:{server.port} (the page at /" in server.log_path.read_text()


def test_onnxruntime_backend_without_an_export_is_one_line(cnnexp, run, tmp_path):
    missing = tmp_path / "none.onnx"
    result = cnnexp("serve", f"run={run}", "backend=onnxruntime", f"onnx={missing}", f"port={free_port()}")
    assert result.code == 2
    assert result.err == (f"error: backend=onnxruntime needs {missing} and its JSON; run `cnnexp export run={run}` "
                          "first (or give onnx=<file>)\n")
