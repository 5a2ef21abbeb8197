"""`cnnexp train`: the Hydra app over `cnnexp.apis.training` (the run folder is Hydra's, the overrides
those of the command line)."""

from cnnexp.runner.app import app_main
from cnnexp.utils.runs import current_overrides, current_run_dir

CONFIG_NAME = "train"
HELP = "train a model into outputs/train/<run>: checkpoints, curves, metrics"
main = app_main("train", __name__)  # cnnexp train ... -> this module's Hydra app
DATA_PARALLEL = True  # under torchrun, one run over all processes (see runner.app.shared_run_dir)


def run(cfg, on_evaluation=None) -> dict:
    """`on_evaluation(row)`: called after each evaluation (a search reports to its pruner there)."""
    from cnnexp.apis.training import train_config
    from cnnexp.utils import tunings

    tunings.training_start()
    return train_config(cfg, current_run_dir(), current_overrides(), on_evaluation)
