"""Stopping a run cleanly: the first SIGINT (Ctrl-C) or SIGTERM (what `kill` and a SLURM preemption send)
only asks the trainer to stop at the next step boundary, where it saves `last.pt` and `metrics.json`;
a second one exits at once. Exiting at once corrupts nothing: every checkpoint and JSON file is written
to a temporary name and renamed, so the files on disk are always the previous complete ones."""

import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """A context manager that holds the SIGINT/SIGTERM handlers while a run trains; `signum` is the
    signal that asked to stop (None while none has). Outside the main thread (where Python cannot
    handle signals) it does nothing and the default behaviour stays."""

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            self.previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            sys.stderr.write(f"\n{name} again: exiting at once (the checkpoints already written are complete)\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        sys.stderr.write(f"\n{name}: stopping after this step and saving last.pt (Ctrl-C again quits at once)\n")
        sys.stderr.flush()

    @property
    def requested(self) -> bool:
        return self.signum is not None
