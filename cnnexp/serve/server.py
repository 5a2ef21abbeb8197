"""Running the service with uvicorn: one process, or `workers` processes sharing the socket (uvicorn's
own supervisor; each worker loads the run once). SIGINT/SIGTERM stop accepting connections, let the
requests in flight finish, and return, so the command exits 0. The certificate, the token and the runs
are checked (and the token made) before the port is taken, once, in the process the user started."""

import contextlib
import logging
import os
import signal
import socket
import tempfile
import threading
from urllib.parse import quote

import uvicorn
from omegaconf import OmegaConf

from cnnexp.serve.access import is_loopback, service_token
from cnnexp.serve.app import create_app
from cnnexp.serve.metrics import MULTIPROCESS_ENV
from cnnexp.serve.protocol import HeaderDeadlineProtocol
from cnnexp.serve.tls import tls_settings
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import about_run, checkpoint_path, exported_onnx, named_runs

CONFIG_ENV = "CNNEXP_SERVE_CONFIG"  # the resolved config, for worker processes started by uvicorn
GRACE_S = 30  # longest wait for requests in flight after a stop signal
log = logging.getLogger("uvicorn.error")  # uvicorn's own log: one format for its lines and ours


class GracefulServer(uvicorn.Server):
    """uvicorn's Server, except that after a graceful stop on SIGINT/SIGTERM it returns instead of
    re-raising the signal (which would end the process with the signal's status, not 0)."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(cfg) -> None:
    tls = tls_settings(cfg)
    token, origin = service_token(cfg)
    check_runs(cfg)
    cfg = OmegaConf.merge(cfg, {"token": token})  # from here on: the token itself, None for an open service
    HeaderDeadlineProtocol.timeout_s = cfg.read_timeout_s
    settings = dict(host=cfg.host, port=cfg.port, log_level="info", timeout_graceful_shutdown=GRACE_S,
                    lifespan="on", access_log=cfg.access_log is True, http=HeaderDeadlineProtocol, **tls)
    sock = listen(cfg.host, cfg.port)
    print(f"cnnexp serve: {url(sock, bool(tls))} (the page at /, POST images to /predict; Ctrl+C stops)", flush=True)
    if cfg.workers > 1:
        serve_workers(cfg, settings, sock, origin)
        return
    app = create_app(cfg)
    config = uvicorn.Config(app, **settings)  # sets up uvicorn's logging, which announce writes to
    announce(cfg, origin, bool(tls))
    GracefulServer(config).run(sockets=[sock])
    if app.state.service.failure is not None:
        raise app.state.service.failure


def announce(cfg, origin: str | None, tls: bool) -> None:
    """The start line about the token: a generated one inside the page's URL (printed this once); where
    the token came from; or, off loopback with token=none, that anyone can use the service."""
    host, port = cfg.host, cfg.port
    if origin == "generated":
        log.info("the page, with the token this service made (shown only now; programs send it as "
                 "'Authorization: Bearer <token>'): %s", " or ".join(page_urls(host, port, tls, cfg.token)))
    elif origin is not None:
        log.info("/predict, /info and /metrics need the token from %s ('Authorization: Bearer <token>')", origin)
    elif not is_loopback(host):
        log.warning("token=none: /predict, /info and /metrics on %s:%d are open to anyone who can reach the port",
                    host, port)


def page_urls(host: str, port: int, tls: bool, token: str) -> list[str]:
    """The page's URL with the token in its fragment (which browsers never send): at this machine's name
    when the host is a wildcard address, and at 127.0.0.1 / ::1 for a browser on this machine."""
    scheme, fragment = ("https" if tls else "http"), f"#token={quote(token, safe='')}"
    if host in ("0.0.0.0", "::"):
        local = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return [f"{scheme}://{socket.gethostname()}:{port}/{fragment}", f"{scheme}://{local}:{port}/{fragment}"]
    return [f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/{fragment}"]


def check_runs(cfg) -> None:
    """A wrong run= (or one of named runs, named by its key) is one line before the port is taken."""
    runs = named_runs(cfg.run)
    if runs is None:
        check_run(cfg, cfg.run, cfg.checkpoint)
        return
    for name, run in runs.items():
        with about_run(name):
            check_run(cfg, run, None)


def check_run(cfg, run, checkpoint) -> None:
    checkpoint_path(run, checkpoint, cfg.which)
    if cfg.backend == "onnxruntime":
        exported_onnx(run, checkpoint, cfg.onnx)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is a one-line error (exit 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        raise UserError(f"cannot listen on {host}:{port} ({reason}); choose another port= (or host=)") from exc


def url(sock: socket.socket, tls: bool) -> str:
    """The address a browser or curl reaches the bound socket at (port=0: the port the system chose)."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def serve_workers(cfg, settings: dict, sock: socket.socket, origin: str | None) -> None:
    """Load once here first (every bad run= or option is one line, exit 2, before any worker starts),
    then uvicorn's supervisor starts the workers, each building the app from CONFIG_ENV (the resolved
    config: every worker has the same token) and writing its metrics to one shared folder."""
    from uvicorn.supervisors import Multiprocess

    from cnnexp.serve.app import load_model

    load_model(cfg)
    os.environ[CONFIG_ENV] = OmegaConf.to_yaml(cfg, resolve=True)
    config = uvicorn.Config("cnnexp.serve.server:app_from_environment", factory=True, workers=cfg.workers,
                            **settings)
    announce(cfg, origin, "ssl_certfile" in settings)
    with tempfile.TemporaryDirectory(prefix="cnnexp-metrics-") as shared:
        os.environ[MULTIPROCESS_ENV] = shared
        Multiprocess(config, sockets=[sock]).run()


def app_from_environment():
    """The app of one worker process (uvicorn calls this in each): the worker takes connections once
    its model is loaded, so no request meets a worker that is still loading while another is ready."""
    cfg = OmegaConf.create(os.environ[CONFIG_ENV])
    HeaderDeadlineProtocol.timeout_s = cfg.read_timeout_s
    return create_app(cfg, load_first=True)
