"""The small text helpers every command's output goes through (cnnexp/utils/text.py)."""

import pytest

from cnnexp.utils.text import plural


@pytest.mark.parametrize("count, word, text", [
    (1, "epoch", "1 epoch"), (0, "epoch", "0 epochs"), (2, "run", "2 runs"),
    (1, "batch", "1 batch"), (2, "batch", "2 batches"), (3, "pass", "3 passes"), (2, "box", "2 boxes"), (2, "patch", "2 patches"),
])
def test_plural(count, word, text):
    assert plural(count, word) == text


def test_hydras_lines_fold_to_80_columns():
    """A multirun's `#i : overrides` line, as Hydra logs it, within cnnexp's console width."""
    import logging

    from cnnexp.runner.logs import FoldedFormatter

    overrides = " ".join(f"model.key{i}={i}" for i in range(12))
    record = logging.LogRecord("hydra", logging.INFO, __file__, 1, "\t#0 : " + overrides, None, None)
    text = FoldedFormatter(fmt="[%(asctime)s][HYDRA] %(message)s").format(record)
    assert max(len(line) for line in text.splitlines()) <= 80 and "\t" not in text
    assert " ".join(text.split()).endswith("#0 : " + overrides)
