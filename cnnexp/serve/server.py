"""Running the service with uvicorn: one process, or `workers` processes sharing the socket (uvicorn's
own supervisor; each worker loads the run once). SIGINT/SIGTERM stop accepting connections, let the
requests in flight finish, and return, so the command exits 0."""

import contextlib
import os
import signal
import socket
import threading

import uvicorn
from omegaconf import OmegaConf

from cnnexp.serve.app import create_app
from cnnexp.serve.protocol import HeaderDeadlineProtocol
from cnnexp.utils.errors import UserError
from cnnexp.utils.runs import about_run, checkpoint_path, exported_onnx, named_runs

CONFIG_ENV = "CNNEXP_SERVE_CONFIG"  # the resolved config, for worker processes started by uvicorn
GRACE_S = 30  # longest wait for requests in flight after a stop signal


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
    check_runs(cfg)
    HeaderDeadlineProtocol.timeout_s = float(cfg.read_timeout_s)
    settings = dict(host=str(cfg.host), port=int(cfg.port), log_level="info", timeout_graceful_shutdown=GRACE_S,
                    lifespan="on", access_log=bool(cfg.access_log), http=HeaderDeadlineProtocol)
    sock = listen(str(cfg.host), int(cfg.port))
    print(f"cnnexp serve: {url(sock)} (the page at /, POST images to /predict; Ctrl+C stops)", flush=True)
    if int(cfg.workers) > 1:
        serve_workers(cfg, settings, sock)
        return
    app = create_app(cfg)
    GracefulServer(uvicorn.Config(app, **settings)).run(sockets=[sock])
    if app.state.service.failure is not None:
        raise app.state.service.failure


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


def url(sock: socket.socket) -> str:
    """The address a browser or curl reaches the bound socket at (port=0: the port the system chose)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_workers(cfg, settings: dict, sock: socket.socket) -> None:
    """Load once here first (every bad run= or option is one line, exit 2, before any worker starts),
    then uvicorn's supervisor starts the workers, each building the app from CONFIG_ENV."""
    from uvicorn.supervisors import Multiprocess

    from cnnexp.serve.app import load_model

    load_model(cfg)
    os.environ[CONFIG_ENV] = OmegaConf.to_yaml(cfg, resolve=True)
    config = uvicorn.Config("cnnexp.serve.server:app_from_environment", factory=True, workers=int(cfg.workers),
                            **settings)
    Multiprocess(config, sockets=[sock]).run()


def app_from_environment():
    """The app of one worker process (uvicorn calls this in each): the worker takes connections once
    its model is loaded, so no request meets a worker that is still loading while another is ready."""
    cfg = OmegaConf.create(os.environ[CONFIG_ENV])
    HeaderDeadlineProtocol.timeout_s = float(cfg.read_timeout_s)
    return create_app(cfg, load_first=True)
