"""mnist_steps.png: the test error of every seed at each step of docs/results/recipes.md, with the
mean and std over seeds, from the summary.json files `cnnexp sweep summarize` wrote for the steps.

    python docs/results/recipes/plot_steps.py    (from the repository root; needs matplotlib)
"""

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
STEPS = {  # label: the step's summary, as recipes.md's MNIST table
    "0 tutorial\nLeNet": "mnist_step0_summary.json",
    "1 small_cnn\nAdam, cosine": "mnist_step1_summary.json",
    "2a + shifts,\nrotation, zoom": "mnist_step2a_summary.json",
    "2b + label\nsmoothing 0.1": "mnist_step2b_summary.json",
    "2c + EMA 0.999": "mnist_step2c_summary.json",
    "3 + two convs\na stage\n(mnist_best)": "mnist_step3_summary.json",
}


def test_errors(summary_file: Path) -> list[float]:
    """Every finished run's test error in %, over all the summary's points (a step is one recipe)."""
    points = json.loads(summary_file.read_text())["points"]
    return [100 * run["metrics"]["test_error"] for point in points for run in point["runs"]
            if run["status"] == "done" and run["metrics"].get("test_error") is not None]


def main() -> None:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for x, (label, name) in enumerate(STEPS.items()):
        errors = test_errors(HERE / name)
        ax.scatter([x] * len(errors), errors, color="tab:blue", alpha=0.6, zorder=3)
        std = statistics.stdev(errors) if len(errors) > 1 else 0.0
        ax.errorbar([x + 0.15], [statistics.fmean(errors)], yerr=[std], fmt="_", color="black", capsize=4,
                    markersize=14, zorder=4)
        ax.annotate(f"{statistics.fmean(errors):.2f} ± {std:.2f} %\n({len(errors)} seeds)",
                    (x + 0.22, statistics.fmean(errors)), fontsize="small", va="center")
    ax.axhline(0.5, color="tab:red", linestyle="--", linewidth=1, label="target: 0.5 % mean")
    ax.set_xticks(range(len(STEPS)), list(STEPS), fontsize="small")
    ax.set_xlim(-0.4, len(STEPS) - 0.2)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("MNIST test error %")
    ax.set_title("MNIST, from the tutorial's recipe to experiment=mnist_best: each dot a seed, bar: mean ± std",
                 fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(HERE / "mnist_steps.png", dpi=100)


if __name__ == "__main__":
    main()
