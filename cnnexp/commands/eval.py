"""`cnnexp eval`: a read-only command over `cnnexp.apis.evaluation` (the dataset.* overrides are the
command line's; the report goes to <run>/eval/<split>...)."""

from cnnexp.runner.app import app_main
from cnnexp.utils import jobdirs

CONFIG_NAME = "eval"
HELP = "score a run: rank-1/5, per class, confusion matrix, --tencrop, by="
FLAGS = {"--tencrop": "eval.tencrop=true"}
READ_ONLY = True  # composed once, run without a Hydra job (see runner/app.py)
main = app_main("eval", __name__)  # cnnexp eval ... -> this module's app


def run(cfg, overrides: list[str]) -> dict:
    from cnnexp.apis.evaluation import evaluate_run, report_folder
    from cnnexp.inference.open_run import dataset_overrides

    out = report_folder(cfg)
    try:
        return evaluate_run(cfg, out, dataset_overrides(cfg, overrides))
    finally:
        jobdirs.prune_empty(out, levels=2)  # a failed eval leaves no empty <run>/eval/<split> behind

