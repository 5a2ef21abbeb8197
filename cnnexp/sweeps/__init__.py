"""Sweeps and searches: plan a grid (or an Optuna study), launch the train runs through Hydra's
multirun, skip what is done, summarise the run folders into a table and a plot. `cnnexp sweep`
(cnnexp/commands/sweep.py) is its thin adapter: it hands in the arguments and the train command."""
