"""`cnnexp serve`: a trained run as an HTTP service (POST /predict, /health, /info) with a web page at /."""

CONFIG_NAME = "serve"
HELP = "an HTTP prediction service with a web page for a trained run (run=..., port=8000)"
FLAGS = {"--tencrop": "tencrop=true"}


def run(cfg) -> None:
    from cnnexp.serve.server import serve  # fastapi and uvicorn: only when a server really starts

    serve(cfg)
