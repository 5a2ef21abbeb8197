"""The config tree and the embedded data ship inside the wheel, so an installed cnnexp finds them."""

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_data():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["package-data"]


def test_every_config_file_is_packaged():
    patterns = package_data()["cnnexp.conf"]
    for path in (ROOT / "conf").rglob("*.yaml"):
        relative = path.relative_to(ROOT / "conf").as_posix()
        assert any(fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns), relative


def test_every_python_package_is_listed():
    listed = set(tomllib.load(open(ROOT / "pyproject.toml", "rb"))["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cnnexp").rglob("__init__.py")}
    assert found <= listed, found - listed
