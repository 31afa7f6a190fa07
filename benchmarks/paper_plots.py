"""Figures of the paper and quality benchmarks (matplotlib, headless): method P@1, ablation bars,
convergence and label-noise curves, and the quality/throughput frontier. Each function takes plain
result dicts and writes one PNG; ``python -m benchmarks.paper_plots frontier QUALITY.json OUT.png`` plots
the frontier of a quality benchmark's ``--json`` output."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: figures go to files
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_ablation", "plot_convergence", "plot_frontier", "plot_methods", "plot_noise"]

Rows = Mapping[str, Sequence[Mapping[str, Any]]]  # dataset -> result rows


def _grid(n: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list[Axes]]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _bars(ax: Axes, groups: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar([g + i * width for g in range(len(groups))], values, width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups)


def plot_methods(results: Rows, methods: Sequence[str], path: Path) -> None:
    """P@1 (%) of every method on every dataset, one panel per dataset."""
    fig, axes = _grid(len(results))
    for ax, (name, rows) in zip(axes, results.items(), strict=True):
        by_method = {r["method"]: r for r in rows if "error" not in r}
        shown = [m for m in methods if m in by_method]
        ax.barh(shown[::-1], [by_method[m]["p@1"] * 100 for m in shown[::-1]], color="tab:blue")
        ax.set_title(name)
        ax.set_xlabel("test P@1 (%)")
        low = min(by_method[m]["p@1"] * 100 for m in shown)
        ax.set_xlim(max(0.0, low - 10), None)
    _save(fig, path)


def plot_ablation(results: Rows, methods: Sequence[str], path: Path) -> None:
    """Paper Fig. 4: bars of test P@1/3/5 for the ablation variants on every dataset."""
    fig, axes = _grid(len(results))
    for ax, (name, rows) in zip(axes, results.items(), strict=True):
        by_method = {r["method"]: r for r in rows if "error" not in r}
        _bars(ax, ["P@1", "P@3", "P@5"], {m: [by_method[m][f"p@{k}"] * 100 for k in (1, 3, 5)]
                                          for m in methods if m in by_method})
        ax.set_title(name)
        ax.set_ylabel("test %")
    axes[0].legend(fontsize=8)
    _save(fig, path)


def plot_convergence(curves: Mapping[str, Mapping[str, Sequence[float]]], path: Path) -> None:
    """Validation P@1 (%) per epoch, one panel per dataset, one line per method."""
    fig, axes = _grid(len(curves))
    for ax, (name, by_method) in zip(axes, curves.items(), strict=True):
        for method, values in by_method.items():
            ax.plot(range(1, len(values) + 1), [v * 100 for v in values], marker=".", label=method)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation P@1 (%)")
    axes[0].legend(fontsize=8)
    _save(fig, path)


def plot_noise(noise: Mapping[str, Mapping[str, Mapping[str, Mapping[float, Mapping[str, float]]]]],
               path: Path) -> None:
    """Paper Fig. 3: clean-test P@1 and P@3 against the training-label noise rate.

    ``noise``: dataset → kind ("missing", "flip") → method → rate → metrics; one row of panels per
    dataset, columns missing P@1, missing P@3, flip P@1, flip P@3.
    """
    panels = [(kind, metric) for kind in ("missing", "flip") for metric in ("p@1", "p@3")]
    methods = list(dict.fromkeys(m for kinds in noise.values() for by in kinds.values() for m in by))
    colour = {m: f"C{i}" for i, m in enumerate(methods)}  # one colour per method in every panel
    fig, axes = plt.subplots(len(noise), 4, figsize=(16, 3.2 * len(noise)), squeeze=False)
    for row, (name, kinds) in zip(axes, noise.items(), strict=True):
        for ax, (kind, metric) in zip(row, panels, strict=True):
            for method, by_rate in kinds.get(kind, {}).items():
                rates = sorted(by_rate)
                ax.plot([r * 100 for r in rates], [by_rate[r][metric] * 100 for r in rates], marker="o",
                        label=method, color=colour[method])
            label = "missing" if kind == "missing" else "missing+invalid"
            ax.set_title(f"{name}: {label}, {metric.upper()}")
            ax.set_xlabel("noise rate (%)")
            ax.set_ylabel(f"clean test {metric.upper()} (%)")
        row[0].legend(fontsize=7)
    _save(fig, path)


def plot_frontier(results: Rows, path: Path) -> None:
    """Test P@1 (%) against prediction docs/s (log scale, featurizing included), one panel per dataset,
    one labelled point per method: the quality/throughput frontier of a quality benchmark run. Rows whose
    rate leaves their featurizing out (``encoding_excluded``) are not comparable, so not drawn."""
    fig, axes = _grid(len(results), width=5.0, height=3.8)
    for ax, (name, rows) in zip(axes, results.items(), strict=True):
        for i, row in enumerate(r for r in rows if "error" not in r and not r.get("encoding_excluded")):
            ours = row["method"].startswith("Rank-AE")
            ax.scatter(row["predict_docs_per_s"], row["p@1"] * 100, color=f"C{i}", marker="*" if ours else "o",
                       s=120 if ours else 40, label=row["method"])
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("predict docs/s, 2 CPU cores (log)")
        ax.set_ylabel("test P@1 (%)")
        ax.legend(fontsize=6)
    _save(fig, path)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "frontier":
        raise SystemExit("usage: python -m benchmarks.paper_plots frontier QUALITY.json OUT.png")
    plot_frontier(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]))
