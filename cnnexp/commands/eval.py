"""`cnnexp eval`: the Hydra app over `cnnexp.apis.evaluation` (the dataset.* overrides are the command
line's; the report goes to Hydra's job folder, <run>/eval/<split>...)."""

from cnnexp.config.app import app_main
from cnnexp.utils import jobdirs
from cnnexp.utils.runs import current_run_dir

CONFIG_NAME = "eval"
HELP = "score a run: rank-1/5, per class, confusion matrix, --tencrop, by="
FLAGS = {"--tencrop": "eval.tencrop=true"}
main = app_main("eval", __name__)  # cnnexp eval ... -> this module's Hydra app


def run(cfg) -> dict:
    from cnnexp.apis.evaluation import evaluate_run
    from cnnexp.inference.open_run import hydra_dataset_overrides

    out = current_run_dir()
    try:
        return evaluate_run(cfg, out, hydra_dataset_overrides(cfg))
    finally:
        jobdirs.prune_empty(out, levels=2)  # a failed eval leaves no empty <run>/eval/<split> behind
