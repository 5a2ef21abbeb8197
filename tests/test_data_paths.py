"""Data that works from any folder: CNNEXP_DATA as the dataset defaults' root, error advice that never
repeats the path that failed, and tests that skip, naming the data, when CNNEXP_TEST_DATA has none."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT, need


def test_need_skips_naming_the_data_and_where_it_was_looked_for(tmp_path):
    with pytest.raises(pytest.skip.Exception) as skipped:
        need(tmp_path / "mnist", "the MNIST files")
    assert f"needs the MNIST files, not found at {tmp_path / 'mnist'}" in str(skipped.value)
    assert "CNNEXP_TEST_DATA" in str(skipped.value)


def test_an_empty_test_data_folder_skips_the_tests_that_need_data(tmp_path):
    """With CNNEXP_TEST_DATA pointing at an empty folder, tests that read MNIST, the Olivetti GIF and the
    UTKFace faces are skipped with the data named; the others pass."""
    env = {**os.environ, "CNNEXP_TEST_DATA": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/test_builtin_datasets.py", "tests/test_face_labels.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    skips = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and " passed" in proc.stdout.splitlines()[-1]
    assert any(f"not found at {tmp_path / 'mnist'}" in line for line in skips)
    assert any("the Olivetti GIF" in line for line in skips)
    assert any(f"the UTKFace faces are not at {tmp_path / 'utkface'}" in line for line in skips)


def test_cnnexp_data_is_the_root_of_the_dataset_defaults(cnnexp, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNEXP_DATA", str(tmp_path / "data"))
    result = cnnexp("train", "dataset=mnist", "dataset.download=false", "--cfg", "job", "--resolve")
    assert f"root: {tmp_path / 'data' / 'mnist'}\n" in result.out
    result = cnnexp("train", "dataset=utkface", "--cfg", "job", "--resolve")
    assert f"root: {tmp_path / 'data' / 'utkface'}\n" in result.out
    monkeypatch.delenv("CNNEXP_DATA")
    assert "root: data/mnist\n" in cnnexp("train", "dataset=mnist", "--cfg", "job", "--resolve").out
    assert "root: null\n" in cnnexp("train", "dataset=utkface", "--cfg", "job", "--resolve").out


def test_missing_mnist_advice_does_not_repeat_the_failing_path(cnnexp, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNEXP_DATA", str(tmp_path))
    result = cnnexp("train", "dataset=mnist", "dataset.download=false")
    assert result.code == 2
    problem, advice = result.err.strip().split("; ", 1)
    assert problem.startswith(f"error: MNIST not found under {tmp_path / 'mnist'}/MNIST/raw")
    assert str(tmp_path) not in advice and "CNNEXP_DATA=" in advice
    result = cnnexp("train", "dataset=mnist", f"dataset.root={tmp_path / 'elsewhere'}", "dataset.download=false")
    assert "elsewhere" not in result.err.strip().split("; ", 1)[1]
