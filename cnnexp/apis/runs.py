"""`Run`: a train run folder as Python sees it (what `cnnexp.train` returns)."""

import csv
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """A train run folder: `folder`, and what it holds, read when asked (a run still training, or
    resumed since, shows its current files)."""

    folder: Path

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))  # Run("outputs/train/...") from a notebook

    @property
    def metrics(self) -> dict:
        """metrics.json: the final numbers (best validation error, its epoch and test error, ...)."""
        return json.loads((self.folder / "metrics.json").read_text())

    @property
    def history(self) -> list[dict]:
        """history.csv, one dict an evaluation, numbers as numbers (None where a column is empty)."""
        with open(self.folder / "history.csv", newline="") as handle:
            return [{key: number(value) for key, value in row.items()} for row in csv.DictReader(handle)]

    @property
    def best(self) -> Path:
        return self.folder / "checkpoints" / "best.pt"

    @property
    def last(self) -> Path:
        return self.folder / "checkpoints" / "last.pt"

    @property
    def curves(self) -> Path:
        """curves.png (in a notebook: `IPython.display.Image(run.curves)`)."""
        return self.folder / "curves.png"

    def open(self, device: str = "cpu", which: str = "best"):
        """The run's `which` checkpoint ready to predict and evaluate (`cnnexp.open_run`)."""
        from cnnexp.apis.inference import open_run

        return open_run(self.folder, device=device, which=which)


def number(text: str):
    """A CSV cell as an int or float where it is one, None where empty, else the text."""
    if text in ("", None):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
