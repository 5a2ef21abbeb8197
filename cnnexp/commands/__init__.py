"""One module per subcommand. Each has `HELP` (one line for `cnnexp --help`) and `main(argv)`, which
`cnnexp` calls with the arguments after the command's name; a command that is one Hydra app gets its
`main` from `runner.app.app_main` and has `CONFIG_NAME` (its primary config in conf/), `run(cfg)` and
optional `FLAGS` (`--tencrop` -> `eval.tencrop=true`). A command that only reads runs or data and
writes where it is told has `READ_ONLY = True` and `run(cfg, overrides)`: run once, it is no Hydra job
(see runner/app.py).

`COMMANDS` is the list `cnnexp` dispatches on: adding a subcommand is one module here, one line below
and one primary config.
"""

COMMANDS = {
    "train": "cnnexp.commands.train",
    "sweep": "cnnexp.commands.sweep",
    "eval": "cnnexp.commands.eval",
    "predict": "cnnexp.commands.predict",
    "data": "cnnexp.commands.data",
    "serve": "cnnexp.commands.serve",
    "features": "cnnexp.commands.features",
    "probe": "cnnexp.commands.probe",
    "viz": "cnnexp.commands.viz",
    "export": "cnnexp.commands.export",
}
