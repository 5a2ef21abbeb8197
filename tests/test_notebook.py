"""The docs' notebook (docs/notebooks/olivetti.ipynb), run through a real Jupyter kernel: its numbers are
the command line's for the same overrides and seed, the outputs stored in it (what the site shows) are
the ones it gives now, progress shows in place, and interrupting the kernel saves and says how to resume.

After changing the notebook or what it prints, store its fresh outputs with
`python tests/test_notebook.py --write` (then check the diff)."""

import ast
import json
import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from cnnexp import Run  # noqa: E402
from conftest import read_json  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "olivetti.ipynb"


def execute(notebook, folder: Path):
    """Run every cell of `notebook` in a fresh kernel whose working folder is `folder`."""
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(folder)}}).execute()
    return notebook


def overrides_of(notebook) -> list[str]:
    """The `overrides = [...]` list the notebook trains with."""
    for cell in notebook.cells:
        for node in ast.walk(ast.parse(cell.source)) if cell.cell_type == "code" else ():
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "overrides":
                return ast.literal_eval(node.value)
    raise AssertionError("the notebook defines no overrides list")


def results(notebook) -> list[str]:
    """The plain-text result of each code cell that has one (its last expression's value)."""
    return [output["data"]["text/plain"] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if output["output_type"] == "execute_result"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run fresh in one folder, the same training and ten-crop eval by the CLI in another."""
    folder = tmp_path_factory.mktemp("notebook")
    notebook = execute(nbformat.read(NOTEBOOK, as_version=4), folder)
    cli = tmp_path_factory.mktemp("cli") / "run"
    for args in (["train", *overrides_of(notebook), f"hydra.run.dir={cli}"], ["eval", f"run={cli}", "--tencrop"]):
        # a process of its own, as a user types it (not this test process, whose state other tests made)
        proc = subprocess.run([sys.executable, "-m", "cnnexp", *args], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    (run,) = (folder / "outputs" / "train").iterdir()
    return notebook, run, cli


def test_the_notebooks_numbers_are_the_command_lines(executed):
    _, run, cli = executed
    keys = ("best_val_error", "best_epoch", "test_error")
    assert {k: read_json(run / "metrics.json")[k] for k in keys} == {k: read_json(cli / "metrics.json")[k] for k in keys}
    # errors exactly; losses to float32 rounding
    assert [r["val_loss"] for r in Run(run).history] == pytest.approx([r["val_loss"] for r in Run(cli).history], rel=1e-5)
    ours, theirs = (read_json(folder / "eval" / "test-tencrop" / "eval.json") for folder in (run, cli))
    for key in ("error", "tencrop_error", "tencrop_rank5"):
        assert ours[key] == theirs[key], key
    for key in ("loss", "tencrop_loss"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key


def test_each_line_shows_once_and_goes_to_train_log(executed):
    """The run's lines are shown once each in the notebook, and train.log holds them as in a terminal."""
    notebook, run, _ = executed
    training = next(c for c in notebook.cells if c.cell_type == "code" and "cnnexp.train(" in c.source)
    shown = [o["data"]["text/plain"] for o in training.outputs if o["output_type"] == "display_data"]
    rows = [text for text in shown if "img/s" not in text and "batches" not in text]
    assert len(rows) == len(set(rows))
    log = (run / "train.log").read_text()
    assert "cnnexp train" in log and "Best validation error" in log


def test_the_stored_outputs_are_what_the_notebook_gives_now(executed):
    """What the site shows: the stored results (metrics, predictions, errors) equal a fresh run's."""
    notebook, _, _ = executed
    stored = results(nbformat.read(NOTEBOOK, as_version=4))
    fresh = results(notebook)
    assert len(stored) == len(fresh) >= 4
    for was, now in zip(stored, fresh):
        if not now.startswith("<IPython"):
            assert was == now


def test_progress_is_one_line_redrawn_in_place(executed):
    notebook, _, _ = executed
    training = next(c for c in notebook.cells if c.cell_type == "code" and "cnnexp.train(" in c.source)
    lines = [o["data"] for o in training.outputs if "batches" in o.get("data", {}).get("text/plain", "")]
    epochs = dict(o.split("=", 1) for o in overrides_of(notebook))["trainer.epochs"]
    assert len(lines) == 1, "one progress line for the whole run"
    assert lines[0]["text/plain"].startswith(f"epoch {epochs}  8/8 batches")
    assert "<progress" in lines[0]["text/html"]


def test_the_notebooks_links_lead_to_pages_of_the_site():
    """The site renders the notebook at notebooks/<name>/ and leaves its links as written: each must be
    a page's address relative to that one (mkdocs checks the links of .md pages only)."""
    import posixpath
    import re

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    links = [link for cell in notebook.cells if cell.cell_type == "markdown"
             for link in re.findall(r"\]\(([^)#]+)", cell.source) if "://" not in link]
    assert links
    for link in links:
        page = posixpath.normpath(posixpath.join(f"notebooks/{NOTEBOOK.stem}", link))
        assert (NOTEBOOK.parents[1] / f"{page}.md").is_file(), link


INTERRUPTED = """
import cnnexp
cnnexp.train("trainer.epochs=500", "device=cpu", run_dir="run")
"""


def test_interrupting_the_kernel_saves_last_pt_and_says_how_to_resume(tmp_path):
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        client.execute(INTERRUPTED)
        deadline = time.monotonic() + 300
        while not (tmp_path / "run" / "history.csv").is_file():  # training has started: the first evaluation
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        manager.interrupt_kernel()
        error = first_error(client, deadline)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert error["ename"] == "Interrupted", error
    assert "saved" in error["evalue"]
    assert f"cnnexp.train('trainer.resume={(tmp_path / 'run').resolve()}')" in error["evalue"]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def first_error(client, deadline: float) -> dict:
    """The first error the kernel publishes (the interrupted cell's exception)."""
    while time.monotonic() < deadline:
        try:
            message = client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if message["msg_type"] == "error":
            return message["content"]
    raise AssertionError("the interrupted cell raised nothing")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        nbformat.write(execute(nbformat.read(NOTEBOOK, as_version=4), Path(scratch)), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
