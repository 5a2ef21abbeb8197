"""One module (or package) per subcommand. Each has `CONFIG_NAME` (its primary config in conf/), `HELP`
(one line for `cnnexp --help`), optional `FLAGS` (`--tencrop` -> `eval.tencrop=true`) and `run(cfg)`.

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
