"""`cnnexp serve`: a trained run as an HTTP service (POST /predict, /health, /info) with a web page at /."""

from cnnexp.serve.server import serve
from cnnexp.utils import jobdirs
from cnnexp.utils.runs import current_run_dir

CONFIG_NAME = "serve"
HELP = "an HTTP prediction service with a web page for a trained run (run=..., port=8000)"
FLAGS = {"--tencrop": "tencrop=true"}


def run(cfg) -> None:
    out = current_run_dir()
    try:
        serve(cfg)
    finally:
        if jobdirs.is_scratch(out):
            jobdirs.prune_empty(out, levels=1)
