"""Held-out faces with the guesses of an age run and a gender run: each face of the runs' test split
(the same faces for both: dataset=utkface splits a folder the same way whatever the target) under its
two guesses, green where right, red where wrong with the true label beside it.

    python docs/examples/age_gender_faces.py <age run> <gender run> faces.png [--n 24] [--seed 0]

The faces are drawn at random (seeded) from the test split, which neither run trained or chose on.
"""

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from cnnexp.inference.open_run import open_run
from cnnexp.inference.scoring import plain_scores

CPU = OmegaConf.create({"type": "cpu", "channels_last": False, "threads": None, "precision": "fp32",
                        "compile": False})


def guesses(run: str, split_name: str = "test"):
    """(test split, class names, predicted class per face, its probability) of one run."""
    restored = open_run(run, None, "best", CPU)
    split = restored.load_data().split(split_name)
    probs = plain_scores(restored.model, split.images, None, restored.pipeline, 100).probs
    top_p, predicted = probs.max(1)
    return split, restored.class_names, predicted, top_p


def caption(ax, y: float, guess: str, prob: float, truth: str) -> None:
    right = guess == truth
    text = f"{guess} {prob:.2f}" + ("" if right else f" (is {truth})")
    ax.text(0.5, y, text, transform=ax.transAxes, ha="center", fontsize=7, color="green" if right else "red")


def draw(age_run: str, gender_run: str, out: Path, n: int, seed: int) -> None:
    split, age_names, age, age_p = guesses(age_run)
    gender_split, gender_names, gender, gender_p = guesses(gender_run)
    if gender_split.fields != split.fields:
        raise SystemExit("the two runs' test splits hold different faces: train both on one folder with one seed")
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    cols = 8
    rows = -(-len(chosen) // cols)
    fig = Figure(figsize=(1.6 * cols, 2.0 * rows))
    for k, i in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(split.images[i].permute(1, 2, 0).numpy())
        ax.axis("off")
        caption(ax, -0.12, gender_names[gender[i]], gender_p[i].item(), split.fields["gender"][i])
        caption(ax, -0.26, age_names[age[i]], age_p[i].item(), split.fields["age"][i])
    fig.subplots_adjust(left=0.01, right=0.99, top=0.98, bottom=0.08, wspace=0.05, hspace=0.45)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}: {len(chosen)} test faces")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("age_run")
    parser.add_argument("gender_run")
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    draw(args.age_run, args.gender_run, args.out, args.n, args.seed)


if __name__ == "__main__":
    main()
