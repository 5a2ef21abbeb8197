"""Who may ask and what is recorded: the service's token, and the gate every HTTP request passes.

The token: `token=`, else the environment variable CNNEXP_SERVE_TOKEN (out of shell history and process
lists), else on a host other than loopback a random one that the command prints once, inside the page's
URL (`/#token=...`: a URL fragment never reaches a server, so it cannot land in an access log; the page
keeps it for its own requests). `token=none` is the explicit opt-out. On loopback no token is needed
unless one is given.

The gate is plain ASGI middleware (no per-request objects beyond a closure): /predict, /info and
/metrics answer 401 with a JSON error and `WWW-Authenticate: Bearer` unless the request carries
`Authorization: Bearer <token>` (compared in constant time); /health and the page stay open. Every
request is counted and timed for /metrics, and with access_log=json written as one JSON line (time,
method, route, status, latency, image count, client address: never a header, a query or a body)."""

import hmac
import ipaddress
import json
import logging
import os
import secrets
import sys
import time
from datetime import datetime, timezone

from starlette.responses import JSONResponse

from cnnexp.schemas.commands import check_token
from cnnexp.serve.metrics import ROUTES, ServiceMetrics

TOKEN_ENV = "CNNEXP_SERVE_TOKEN"
OPEN = "none"  # token=none: no token, on any host
PROTECTED = frozenset({"/predict", "/info", "/metrics"})
IMAGES = "cnnexp.images"  # the scope key where /predict leaves how many images a request held
MISSING_TOKEN = ("this service needs a token: send the header 'Authorization: Bearer <token>' (the token= it was "
                 f"started with, {TOKEN_ENV}, or the one it printed at start)")
WRONG_TOKEN = (f"the token is not this service's; send the token= it was started with ({TOKEN_ENV}, or the one it "
               "printed at start) as 'Authorization: Bearer <token>'")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return False


def service_token(cfg) -> tuple[str | None, str | None]:
    """(the token, where it came from: 'token=', TOKEN_ENV or 'generated'), or (None, None) for an open
    service: token=none, or loopback with no token given."""
    if cfg.token is not None:
        return (None, None) if cfg.token.lower() == OPEN else (cfg.token, "token=")
    if TOKEN_ENV in os.environ:
        return check_token(TOKEN_ENV, os.environ[TOKEN_ENV]), TOKEN_ENV
    if is_loopback(cfg.host):
        return None, None
    return secrets.token_urlsafe(24), "generated"


class Gate:
    """ASGI middleware: the token check, the metrics of every request, the JSON access log."""

    def __init__(self, app, token: str | None, metrics: ServiceMetrics, json_log: bool):
        self.app, self.metrics = app, metrics
        self.expected = token.encode() if token is not None else None
        self.log = json_access_log() if json_log else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, path = time.perf_counter(), scope["path"]
        status = 500  # unless the app answers: an exception that escapes it becomes a 500

        async def answered(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self.refusal(scope["headers"]) if self.expected is not None and path in PROTECTED else None
            await (refusal or self.app)(scope, receive, answered)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.request(path if path in ROUTES else "other", status, seconds)
            if self.log is not None:
                self.log.info(access_line(scope, status, seconds))

    def refusal(self, headers) -> JSONResponse | None:
        """None when the request carries the token; else the 401 answer."""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.expected):
                    return None
                return unauthorized(WRONG_TOKEN, 'Bearer realm="cnnexp", error="invalid_token"')
        return unauthorized(MISSING_TOKEN, 'Bearer realm="cnnexp"')


def unauthorized(message: str, challenge: str) -> JSONResponse:
    return JSONResponse({"error": message}, 401, headers={"WWW-Authenticate": challenge})


def access_line(scope, status: int, seconds: float) -> str:
    client = scope.get("client")
    return json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                       "method": scope["method"], "route": scope["path"], "status": status,
                       "latency_ms": round(seconds * 1000, 3), "images": scope.get(IMAGES, 0),
                       "client": client[0] if client else None})


def json_access_log() -> logging.Logger:
    """The logger of the JSON lines: the bare line on stdout, where uvicorn writes its text access log."""
    log = logging.getLogger("cnnexp.serve.access")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log
