"""The HTTP routes: POST /predict, GET /health, GET /info, GET /metrics, GET / (the page), behind the gate
(`access.Gate`: the token, the metrics of every request, the JSON access log).

Uploads are read here, not by the framework, so the size limit is enforced while the body arrives
(413 before the rest is read) and a client that stops sending gets 408 after `read_timeout_s`.
Nothing a client sends is used as a file path: uploads are decoded from memory.
"""

import asyncio
import gc
import logging
import os
import signal
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from cnnexp.inference.several import NO_FACE
from cnnexp.serve.access import IMAGES, Gate
from cnnexp.serve.batcher import MicroBatcher
from cnnexp.serve.metrics import CONTENT_TYPE, ServiceMetrics
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import named_runs

log = logging.getLogger("uvicorn.error")  # uvicorn's own log: one format for its lines and ours
FIELD = "image"  # the multipart field that holds the photos
MAX_FILES = 64  # images in one request
INLINE_DECODE_BYTES = 64 * 1024  # smaller uploads are decoded on the event loop


class Service:
    """What the routes share: the options, and the model and batchers once loaded (or why loading failed).
    Named runs (`run={age:<run>,gender:<run>}`) have a batcher each; one run has its batcher under None."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.several = named_runs(cfg.run) is not None
        self.model = None  # ServedModel, or ServedRuns for named runs
        self.batchers: dict[str | None, MicroBatcher] = {}
        self.failure: BaseException | None = None
        self.tasks: list[asyncio.Task] = []
        self.metrics = ServiceMetrics()

    async def load(self) -> None:
        """Restore the run in a thread (torch is imported there), then start batching. A failure is
        kept for the command to report, and the server is asked to stop."""
        try:
            self.model = await asyncio.to_thread(load_model, self.cfg)
        except Exception as exc:
            self.failure = exc
            if not isinstance(exc, UserError):
                log.exception("loading the model failed")
            os.kill(os.getpid(), signal.SIGTERM)  # the server's own graceful stop
            return
        # The ~200k objects of torch, FastAPI and the model live as long as the process: a full garbage
        # collection that walks them all takes 100-200 ms, a pause that would land on requests' latency.
        gc.collect()
        gc.freeze()
        served = self.model.models if self.several else {None: self.model}
        for name, model in served.items():
            self.batchers[name] = MicroBatcher(model.classify, self.cfg.max_batch, self.cfg.max_wait_ms / 1000,
                                               self.metrics.forward_passes(name))
            self.tasks.append(asyncio.create_task(self.batchers[name].run()))
            info = model.info()
            self.metrics.describe(name, info)
            log.info("loaded %s%s (%s, %s, %d CPU threads): ready on /predict", f"run.{name}: " if name else "",
                     info["checkpoint"], info["model"], info["device"], info["threads"])

    def require_model(self):
        if self.model is None:
            raise HTTPException(503, "the model is still loading; retry when GET /health answers 200")
        return self.model

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for batcher in self.batchers.values():
            batcher.close()


def load_model(cfg):
    from cnnexp.serve.model import ServedModel, ServedRuns

    runs = named_runs(cfg.run)
    return ServedModel(cfg) if runs is None else ServedRuns(cfg, runs)


def create_app(cfg, load_first: bool = False) -> FastAPI:
    """The app; it loads the model after it starts answering (/health 503 meanwhile), or with
    `load_first` before (a worker among several then takes connections only once it can serve them).
    `cfg.token` is the resolved token (`access.service_token`): a string, or None for an open service."""
    service = Service(cfg)
    page = resources.files("cnnexp.serve").joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(service.load())
        service.tasks.append(loading)
        if load_first:
            await loading
        yield
        await service.close()

    limit, timeout, detect_face = int(cfg.max_upload_mb * 1024 * 1024), cfg.read_timeout_s, cfg.detect_face
    app = FastAPI(title="cnnexp serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.add_middleware(Gate, token=cfg.token, metrics=service.metrics, json_log=cfg.access_log == "json")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, exc.__class__.__name__, exc)
        return JSONResponse({"error": f"internal error: {exc.__class__.__name__}: {exc}"}, 500)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> JSONResponse:
        if service.model is None:
            return JSONResponse({"status": "loading"}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> dict:
        return service.require_model().info()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        model = service.require_model()
        try:
            uploads = await read_images(request, limit, timeout)
            request.scope[IMAGES] = len(uploads)
            prepared = [await decode(model, data, name) for name, data in uploads]
        except RefusedImage as exc:
            service.metrics.refuse(exc.reason)
            raise
        respond = answer_runs if service.several else answer
        answers = await asyncio.gather(*(respond(service.batchers, name, item, detect_face)
                                         for (name, _), item in zip(uploads, prepared)))
        for row in answers:
            if row.get("reason") == NO_FACE:
                service.metrics.refuse("no_face")
        return JSONResponse({"images": list(answers)})

    return app


async def decode(model, data: bytes, name: str):
    """What `model.prepare` makes of an upload (one run: tensor or None, face box or None); a large upload (a camera photo) is decoded on a thread so
    the event loop goes on serving, a small one here (a thread hop would cost more than the decoding)."""
    from cnnexp.inference.inputs import UnreadableImage

    try:
        if len(data) <= INLINE_DECODE_BYTES:
            return model.prepare(data, name)
        return await asyncio.to_thread(model.prepare, data, name)
    except UnreadableImage as exc:
        raise RefusedImage(exc.status, str(exc), "too_large" if exc.status == 413 else "not_an_image") from exc


class RefusedImage(HTTPException):
    """An upload refused for what it is (a metrics reason: too_large or not_an_image), not for how it was sent."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict | None = None):
        super().__init__(status, detail, headers)
        self.reason = reason


async def answer(batchers: dict, name: str, prepared, detect_face: bool) -> dict:
    """One image's answer from one run: {"image", "top", "face" (with detect_face), "model_ms", "batch"}."""
    tensor, box = prepared
    row = {"image": name, "top": None}
    if detect_face:
        row["face"] = [int(v) for v in box] if box is not None else None
    if tensor is None:
        row["reason"] = NO_FACE
        return row
    row["top"], seconds, batch_size = await batchers[None].submit(tensor)
    row |= {"model_ms": round(seconds * 1000, 3), "batch": batch_size}
    return row


async def answer_runs(batchers: dict, name: str, prepared, detect_face: bool) -> dict:
    """One photo's answer from named runs (`photo_answer`): {"image", "face" (with detect_face), and per
    run {"top", "model_ms", "batch"}}; every run's batcher takes its input at once."""
    from cnnexp.inference.several import photo_answer

    box, inputs = prepared
    if inputs is None:
        return photo_answer(name, box, detect_face, None)
    results = await asyncio.gather(*(batchers[run].submit(tensor) for run, tensor in inputs.items()))
    guesses = {run: {"top": top, "model_ms": round(seconds * 1000, 3), "batch": batch_size}
               for run, (top, seconds, batch_size) in zip(inputs, results)}
    return photo_answer(name, box, detect_face, guesses)


async def read_images(request: Request, limit: int, timeout: float) -> list[tuple[str, bytes]]:
    """(name, bytes) per uploaded image: the multipart field `image` (one or more files), or the raw
    body sent with an image/* content type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("multipart/form-data",) and not content_type.startswith("image/"):
        raise HTTPException(415, f"content type '{content_type or 'none'}' is not accepted; send the photo as the "
                                 f"multipart field '{FIELD}' or as the raw body with an image/* content type")
    body = await read_body(request, limit, timeout)
    if content_type.startswith("image/"):
        if not body:
            raise HTTPException(400, "the request body is empty; send the image's bytes")
        return [("body", body)]
    return await multipart_images(request, body)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (a declared Content-Length over
    the limit is refused before reading), 408 when no data arrives for `timeout` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RefusedImage(413, too_large(limit), "too_large")
    body = bytearray()
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout)
        except StopAsyncIteration:
            return bytes(body)
        except TimeoutError:
            raise HTTPException(408, f"no data for {timeout:g} s while reading the request; send the whole body at once",
                                headers={"Connection": "close"}) from None
        body += chunk
        if len(body) > limit:
            raise RefusedImage(413, too_large(limit), "too_large", headers={"Connection": "close"})


def too_large(limit: int) -> str:
    return f"the upload is larger than max_upload_mb={limit / 1024 / 1024:g} MB; send a smaller image"


async def multipart_images(request: Request, body: bytes) -> list[tuple[str, bytes]]:
    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=MAX_FILES, max_part_size=len(body) + 1).parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"the multipart body cannot be read ({exc.message})") from exc
    files = [item for item in form.getlist(FIELD) if isinstance(item, UploadFile)]
    if not files:
        raise HTTPException(400, f"no file in the multipart field '{FIELD}'; send the photo as {FIELD}=@photo.jpg")
    return [(os.path.basename(upload.filename or FIELD), await upload.read()) for upload in files]
