"""The feedback benchmark's figure: what users see per round, beside what a full retrain would give.

Left: evaluation P@1 of each arm's live model per correction round, and of the ceiling (the default preset
retrained from scratch on the seed plus every reviewed document with its true labels). Right: recall@5 of
the labels hidden from the seed model, which only corrections can teach it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot"]


def plot(result: dict[str, Any], path: Path) -> None:
    """Draw ``result`` (the benchmark's JSON) into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (p1_ax, hidden_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    _curves(p1_ax, result, "p@1")
    _curves(hidden_ax, result, "hidden_recall@5")
    p1_ax.set(xlabel="correction round (0 = seed model)", ylabel="evaluation P@1 (%)",
              title="live model vs retrained ceiling")
    hidden_ax.set(xlabel="correction round (0 = seed model)", ylabel="recall@5 of hidden labels (%)", ylim=(0, 100),
                  title="labels hidden from the seed model")
    hidden_ax.text(0.02, 0.97, "\n".join(result["hidden"]), transform=hidden_ax.transAxes, va="top", fontsize=8)
    for ax in (p1_ax, hidden_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.suptitle(_title(result))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(ax: Any, result: dict[str, Any], key: str) -> None:
    """One line per arm, the ceiling dashed; rounds without a value (None) are left out."""
    ceiling = result["ceiling"][key]
    ax.plot(*_points(ceiling), color="black", linestyle="--", marker=".", label="ceiling (retrained, true labels)")
    for arm in result["arms"]:
        ax.plot(*_points(arm[key]), marker="o", label=f"{arm['name']}: {arm['loss']} loss, "
                                                      f"{round(100 * arm['wrong'])}% wrong")


def _points(values: list[float | None]) -> tuple[list[int], list[float]]:
    kept = [(i, v) for i, v in enumerate(values) if v is not None]
    return [i for i, _ in kept], [v for _, v in kept]


def _title(result: dict[str, Any]) -> str:
    docs = result["docs"]
    return (f"{result['data']}: seed {docs['seed']} docs, {len(docs['stream'])} rounds of ~{docs['stream'][0]} "
            f"streamed, ~{docs['reviewed'][0]} reviewed per round; evaluation {docs['evaluation']} docs")
