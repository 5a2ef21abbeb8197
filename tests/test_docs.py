"""The documentation: the README is a short front door and every section it had before the site
(1,749 lines, up to commit 9622b3e) lives on in the site's pages."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# The section titles of the README before it became a front door (issue 25): each must still head a
# section of the site, so nothing it documented was dropped.
OLD_README_TITLES = [
    "Set up on a fresh machine", "Commands", "train", "eval", "predict", "Checkpoints are loaded safely",
    "serve", "export", "sweep", "When things go wrong", "Models, pretrained weights and fine-tuning",
    "Starting from weights: `model.weights=`", "Freezing and fine-tuning",
    "Transfer learning: `features` and `probe`", "Pictures", "Data", "Image files",
    "Your own images: `dataset=folder`", "Normalisation and augmentation", "data",
    "Dogs vs cats: `experiment=dogs_vs_cats_small`", "Adding a dataset", "Configs", "Add a model", "Layout",
    "Many GPUs and machines", "One model on several GPUs: torchrun", "Searches beyond the grid: Optuna",
    "Results", "Speed", "Before a change lands: two commits side by side",
    "The cost of a run beyond its training steps", "cnnexp against a plain PyTorch loop",
    "Which switch on which machine", "Measured", "The transfer recipes against a plain ImageFolder loop",
    "Speed of the model zoo against a plain PyTorch loop", "A fast start",
]


def normalized(title: str) -> str:
    return re.sub(r"\s+", " ", title.replace("`", "")).strip().lower()


def site_headings() -> set[str]:
    """Every markdown heading of the site's pages (outside code blocks)."""
    headings = set()
    for page in DOCS.rglob("*.md"):
        in_code = False
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                in_code = not in_code
            elif not in_code and (match := re.match(r"#{1,6} (.+)", line)):
                headings.add(normalized(match[1]))
    return headings


def test_every_old_readme_section_has_a_home_in_the_site():
    headings = site_headings()
    lost = [title for title in OLD_README_TITLES if not any(normalized(title) in h for h in headings)]
    assert not lost, f"README sections with no heading in docs/: {lost}"


def test_the_readme_is_a_short_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for must in ("## Set up", "## Commands", "## What next", "## Layout", "mkdocs serve", "![",
                 "docs/getting-started.md"):
        assert must in readme, must


def reference_hook():
    """docs/hooks/reference.py, the mkdocs hook that writes the reference pages at build time."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leaf_keys(node, prefix=""):
    """Dotted keys of a YAML mapping's leaves (a list or an empty mapping is a leaf)."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_the_train_reference_lists_every_key_of_cfg_job(cnnexp):
    import yaml

    result = cnnexp("train", "--cfg", "job")
    assert result.code == 0, result.err
    job_keys = list(leaf_keys(yaml.safe_load(result.out)))
    page = reference_hook().command_page("train", "train", [])
    rows = dict(re.findall(r"^\| `([^`]+)` (\|.*)$", page.split("## Keys", 1)[1], flags=re.M))
    assert list(rows) == job_keys
    assert "| int | `30` | passes over the training split" in rows["trainer.epochs"]
    assert "| float or null | `null` | clip the global gradient norm" in rows["trainer.grad_clip"]
