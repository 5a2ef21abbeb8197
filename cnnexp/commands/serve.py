"""`cnnexp serve`: a trained run as an HTTP service (POST /predict, /health, /info) with a web page at /."""

from cnnexp.runner.app import app_main

CONFIG_NAME = "serve"
HELP = "an HTTP service with a web page for a trained run (port=8000)"
FLAGS = {"--tencrop": "tencrop=true"}
main = app_main("serve", __name__)  # cnnexp serve ... -> this module's Hydra app


def run(cfg) -> None:
    from cnnexp.serve.server import serve  # fastapi and uvicorn: only when a server really starts

    serve(cfg)
