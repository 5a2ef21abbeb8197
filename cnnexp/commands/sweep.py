"""`cnnexp sweep`: a grid of train runs x seeds (or an Optuna search), ending in a table and a plot; the
logic is in cnnexp/sweeps/, the runs are this package's train command.

    cnnexp sweep [sweep=<preset>] [key=v1,v2,... ...] [key=value ...] [seeds=N] [sweep.dir=<folder>]
    cnnexp sweep summarize dir=<folder> [sweep.metric=<metric>]
"""

from cnnexp.commands import train
from cnnexp.sweeps import run as sweep

HELP = "train a grid of configs x seeds; ends in a table and a plot"


def main(argv: list[str]) -> int:
    return sweep.main(argv, train.run)
