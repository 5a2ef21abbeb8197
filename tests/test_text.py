"""The small text helpers every command's output goes through (cnnexp/utils/text.py)."""

import pytest

from cnnexp.utils.text import plural


@pytest.mark.parametrize("count, word, text", [
    (1, "epoch", "1 epoch"), (0, "epoch", "0 epochs"), (2, "run", "2 runs"),
    (1, "batch", "1 batch"), (2, "batch", "2 batches"), (3, "pass", "3 passes"), (2, "box", "2 boxes"), (2, "patch", "2 patches"),
])
def test_plural(count, word, text):
    assert plural(count, word) == text
