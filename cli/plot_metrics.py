"""Plot a run's training curves from its metrics.jsonl.

python cli/plot_metrics.py runs/r1/metrics.jsonl [--out runs/r1/plots]

Writes one PNG per figure (reward, accuracy, format, response length, KL, validation accuracy; those
the file has data for) and all of them side by side in curves.png.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.driver.metrics import (  # noqa: E402
    ACTOR_KL,
    RESPONSE_LENGTH_MAX,
    RESPONSE_LENGTH_MEAN,
    REWARD_ACCURACY,
    REWARD_FORMAT,
    REWARD_MEAN,
    VAL_ACCURACY,
    VAL_AVG_AT_K,
    VAL_FORMAT,
    load_metrics,
)
from mindspeed_rl.errors import HelpFormatter, UserError, cli_entry  # noqa: E402

SPARSE_POINTS = 50
"""Series with fewer points than this (validation, short runs) get markers."""


@dataclass(frozen=True)
class Figure:
    """One plot: a file name, a title, and the metrics drawn on it."""

    name: str
    title: str
    metrics: tuple[str, ...]


FIGURES = (
    Figure("reward", "Reward (mean over samples)", (REWARD_MEAN,)),
    Figure("accuracy", "Training accuracy", (REWARD_ACCURACY,)),
    Figure("format", "Format reward", (REWARD_FORMAT, VAL_FORMAT)),
    Figure(
        "response_length", "Response length (tokens)", (RESPONSE_LENGTH_MEAN, RESPONSE_LENGTH_MAX)
    ),
    Figure("kl", "KL to reference", (ACTOR_KL,)),
    Figure("val_accuracy", "Validation accuracy", (VAL_ACCURACY, VAL_AVG_AT_K)),
)


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(iterations, values) of one metric, skipping rows that lack it or hold null."""
    points = [
        (row["iteration"], row[key]) for row in rows if isinstance(row.get(key), (int, float))
    ]
    return [p[0] for p in points], [float(p[1]) for p in points]


def draw(ax, rows: list[dict], figure: Figure) -> None:
    """Draw ``figure``'s metrics on the matplotlib axes ``ax``."""
    for key in figure.metrics:
        xs, ys = series(rows, key)
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) < SPARSE_POINTS else None, ms=3, label=key)
    ax.set_title(figure.title)
    ax.set_xlabel("iteration")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plot_metrics", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("metrics", type=Path, help="metrics.jsonl written by the trainer")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: next to the file)"
    )
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rows = load_metrics(args.metrics)
    figures = [f for f in FIGURES if any(series(rows, key)[0] for key in f.metrics)]
    if not figures:
        known = ", ".join(key for f in FIGURES for key in f.metrics)
        raise UserError(f"{args.metrics} has none of the plotted metrics ({known})")
    out = args.out if args.out is not None else args.metrics.parent
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory; pick another path")
    out.mkdir(parents=True, exist_ok=True)

    # Agg: no display needed (clusters, CI), chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for figure in figures:
        fig, ax = plt.subplots(figsize=(6, 4))
        draw(ax, rows, figure)
        fig.tight_layout()
        fig.savefig(out / f"{figure.name}.png", dpi=100)
        plt.close(fig)
        print(out / f"{figure.name}.png")

    columns = min(3, len(figures))
    grid_rows = -(-len(figures) // columns)
    fig, axes = plt.subplots(
        grid_rows, columns, figsize=(5 * columns, 3.6 * grid_rows), squeeze=False
    )
    for ax, figure in zip(axes.flat, figures):
        draw(ax, rows, figure)
    for ax in list(axes.flat)[len(figures) :]:
        ax.set_visible(False)
    fig.suptitle(f"{args.metrics} (up to iteration {rows[-1]['iteration']})", fontsize="medium")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
    print(out / "curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
