"""The seed paper's experiments (Wang et al., NAACL 2019) on the shared datasets, in one command.

    tagger bench paper [--quick] [--out DIR | --publish] [--datasets NAME ...] [--sections table noise ...]
    python -m benchmarks.paper ...                                   (the same)

- ``table`` (paper Table 2): P@1/3/5 and nDCG@1/3/5 of Rank-AE, BCE-AE, no-attention Rank-AE, the
  PMI-cosine head and the peers on every set, with the paper's average-rank score.
- ``noise`` (Fig. 3): training labels corrupted by ``model.noise.add_label_noise`` (missing, flip),
  clean test labels; Rank-AE and BCE-AE in a cheaper setting, the product's default model (``tagger
  train`` with no flags) with its margin loss and with BCE in its place, and the fast peers.
- ``ablation`` (Fig. 4), ``convergence`` (validation P@1 per epoch) and ``explain`` (Fig. 5) are
  drawn from the table's runs: nothing is trained twice.

Each section goes to OUT/results.md between ``<!-- paper:NAME -->`` markers (a rerun replaces just
that section) and its figure to OUT/figures/paper_*. OUT is a new run folder ``runs/bench/paper-*``
unless ``--out DIR`` says otherwise; ``--publish`` (not with ``--quick``) writes docs/. Every run is
seeded (seed 0); hyperparameters are in ``FULL`` / ``QUICK`` and written beside the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import paper_plots as plots
from benchmarks import paper_report as report
from benchmarks import quality
from benchmarks.output import add_output_arguments, output_folder
from model.config import PRESETS
from model.data import Corpus
from model.errors import ConfigError
from model.explain import explain, token_attention
from model.tagger import Tagger
from model.text import tokenize

log = logging.getLogger("benchmarks.paper")

VARIANTS: dict[str, dict[str, Any]] = {  # method -> ModelConfig overrides of the plan's base setting
    "Rank-AE": {},  # margin ranking loss, SE channel attention
    "BCE-AE": {"loss": "bce"},  # the paper's "No loss" ablation
    "No-attn Rank-AE": {"attention": False},  # the paper's "No attn" ablation
    "PMI-cosine": {"head": "pmi-cosine"},  # the blog's label-embedding head
}
ABLATION = ("Rank-AE", "No-attn Rank-AE", "BCE-AE")
# The noise grid's pairs of (margin loss, the same model with BCE in its place): the paper's claim is that
# the margin loss loses less under noisy labels. The default's BCE twin swaps the decoder's margin loss only
# (its tag head is trained with BCE in both).
LOSS_PAIRS = (("Rank-AE", "BCE-AE"), ("default", "default, BCE decoder"))
CONVERGENCE = ("Rank-AE", "BCE-AE", "PMI-cosine")
NOISE_SETS = ("reuters", "cooking", "goemotions")
SECTIONS = ("table", "noise", "ablation", "convergence", "explain")
HEADING = "## Paper experiments (Rank-AE, Wang et al. NAACL 2019)"


@dataclass(frozen=True)
class Plan:
    """Sizes and hyperparameters of one run of the benchmark."""

    datasets: tuple[str, ...]
    model: dict[str, Any]  # ModelConfig of the table's variants (before VARIANTS overrides)
    train: dict[str, Any]  # TrainConfig of the table's variants
    noise_model: dict[str, Any]  # the cheaper setting of the noise grid
    noise_train: dict[str, Any]
    default_model: dict[str, Any]  # the default preset's overrides in the noise grid (FULL: none)
    default_train: dict[str, Any]
    rates: tuple[float, ...]  # noise rates; 0 is the clean run, shared by both kinds
    table_peers: tuple[str, ...]
    noise_peers: tuple[str, ...]
    max_train: int | None = None  # subsample (quick mode)
    max_test: int | None = None
    explain_docs: int = 2  # test documents rendered per text dataset


# Base setting: C=256, r=4 with SE attention, sum pooling, h=200 (bibtex validation: 58.2 P@1 against
# 59.2 for the C=1024/r=16 setting, within its ±2.2 noise, at a fraction of the cost; docs/results.md
# "Tuning"); 12 cosine epochs, the best validation epoch kept, no refit, to fit the time budget. SE attention
# on, no tag head, the summed margin loss, AdamW 2e-3 / 0.01: the paper preset's settings (model/config.py),
# which every plan below overrides only in size and schedule; the product defaults are not the paper's.
_PAPER_MODEL, _PAPER_TRAIN = PRESETS["paper"]


def _paper_model(**overrides: Any) -> dict[str, Any]:
    return {**_PAPER_MODEL, **overrides}


def _paper_train(**overrides: Any) -> dict[str, Any]:
    return {**_PAPER_TRAIN, "refit": False, **overrides}  # the preset refits (§3.1); the budget here does not


FULL = Plan(
    # Not delicious: the paper's configuration never beats the label-frequency baseline there and the
    # trainer refuses it (benchmarks/ablation.py measures that; docs/results.md "Delicious").
    datasets=("bibtex", "reuters", "goemotions", "biology", "cooking", "rcv1v2", "mediamill"),
    model=_paper_model(embed_dim=256, latent_dim=200, pooling="sum"),
    train=_paper_train(epochs=12, patience=12, batch_size=128, schedule="cosine"),
    noise_model=_paper_model(embed_dim=256, latent_dim=200, pooling="sum", attention=False),
    noise_train=_paper_train(epochs=6, patience=6, batch_size=128, schedule="cosine"),
    default_model=dict(PRESETS["default"][0]),  # exactly what `tagger train` builds
    default_train=dict(PRESETS["default"][1]),
    rates=(0.0, 0.1, 0.2, 0.4, 0.6),
    table_peers=("omikuji-parabel", "napkinxc-plt", "fasttext-ova", "ovr-logistic"),
    noise_peers=("ovr-logistic", "napkinxc-plt", "omikuji-parabel"),
)
QUICK = Plan(
    datasets=("reuters",),
    model=_paper_model(embed_dim=64, latent_dim=64, label_hidden=128, pooling="sum"),
    train=_paper_train(epochs=3, patience=3, batch_size=64, schedule="cosine"),
    noise_model=_paper_model(embed_dim=64, latent_dim=64, label_hidden=128, pooling="sum", attention=False),
    noise_train=_paper_train(epochs=3, patience=3, batch_size=64, schedule="cosine"),
    default_model={**PRESETS["default"][0], "embed_dim": 64, "latent_dim": 64, "label_hidden": 128},
    default_train={**PRESETS["default"][1], "epochs": 3, "patience": 3},
    rates=(0.0, 0.4),
    table_peers=("napkinxc-plt", "ovr-logistic"),
    noise_peers=("ovr-logistic",),
    max_train=1500,
    max_test=500,
)


def load(name: str, plan: Plan) -> tuple[Corpus, Corpus]:
    """A dataset's (train, test) split, subsampled (seeded) as the plan says."""
    train_corpus, test = quality.DATASETS[name].load()
    return (train_corpus if plan.max_train is None else quality.first_docs(train_corpus, plan.max_train, 0),
            test if plan.max_test is None else quality.first_docs(test, plan.max_test, 0))


def run_table(name: str, train_corpus: Corpus, test: Corpus, plan: Plan, workdir: Path) -> list[dict[str, Any]]:
    """Every Rank-AE variant, then the peers (on the Rank-AE featurizer's tf-idf): result rows."""
    rows = []
    for method, overrides in VARIANTS.items():
        log.info("dataset=%s method=%s", name, method)
        rows.append(quality.run_model(method, train_corpus, test, {**plan.model, **overrides}, plan.train))
    rows += quality.run_peers(train_corpus, test, rows[0]["tagger"], workdir / name, plan.table_peers)
    return rows


def run_noise(name: str, train_corpus: Corpus, test: Corpus, plan: Plan, workdir: Path) -> dict[str, Any]:
    """kind → method → rate → clean-test metrics, for every noise rate and kind of the plan."""
    out: dict[str, Any] = {"missing": {}, "flip": {}}
    for rate in plan.rates:
        for kind in ("missing", "flip") if rate else ("",):
            spec = f"{kind}:{rate}" if rate else ""
            log.info("dataset=%s noise=%s", name, spec or "clean")
            rows = [quality.run_model(method, train_corpus, test, model_kw, {**train_kw, "noise": spec})
                    for method, model_kw, train_kw in _noise_methods(plan)]
            rows += quality.run_peers(train_corpus, test, rows[0]["tagger"], workdir / f"{name}-noise",
                                      plan.noise_peers, noise=spec)
            for row in (r for r in rows if "error" not in r):
                for k in (kind,) if kind else ("missing", "flip"):
                    out[k].setdefault(row["method"], {})[rate] = {m: row[m] for m in report.P_METRICS}
    return out


def _noise_methods(plan: Plan) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(method, ModelConfig, TrainConfig keywords) of every Rank-AE model in the noise grid."""
    settings = {"Rank-AE": (plan.noise_model, plan.noise_train), "default": (plan.default_model, plan.default_train)}
    methods = []
    for margin, bce in LOSS_PAIRS:
        model_kw, train_kw = settings[margin]
        methods += [(margin, model_kw, train_kw), (bce, {**model_kw, "loss": "bce"}, train_kw)]
    return methods


def _pct(value: float) -> str:
    return f"{value * 100:.2f}"


def table_section(results: dict[str, list[dict[str, Any]]], splits: dict[str, tuple[str, int, int]],
                  plan: Plan) -> str:
    """Markdown of the method table, its figure, and per-dataset timings."""
    methods = [*VARIANTS, *(p for p in plan.table_peers)]
    present = [m for m in methods if any(r["method"] == m for rows in results.values() for r in rows)]
    parts = ["### Method table (paper Table 2)\n", "![test P@1 per method](figures/paper_methods.png)\n",
             "Test metrics in %, best of each row in bold; '—': not run on that set (fastText needs raw text) "
             "or failed. Rank score: the paper's average rank over the rows (1 = best), each method ranked "
             "among those present in a row.\n", report.method_table(results, present)]
    for name, rows in results.items():
        chosen = "; ".join(f"{r['method']} epoch {r['chosen']['epoch']} (valid P@1 {_pct(r['chosen']['valid_p@1'])})"
                           for r in rows if "chosen" in r)
        detail = quality.markdown(name, *splits[name], [_plain(r) for r in rows]).replace("### ", "#### ", 1)
        parts.append(detail + f"\nBest validation epoch of {plan.train['epochs']}: {chosen}.\n")
    return "\n".join(parts)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("settings", "chosen", "history", "tagger")}


def noise_section(noise: dict[str, dict[str, Any]], plan: Plan) -> str:
    """Markdown of the label-noise study: P@1 and P@3 grids, the P@1 each method lost under missing labels,
    the target per dataset and loss pair, and how the default's losses compare with the peers'."""
    changed = {**plan.default_model, **plan.default_train}
    default = (f"the default preset with {json.dumps(changed)} changed" if changed
               else "the default preset exactly as `tagger train` builds it")
    parts = ["### Label-noise robustness (paper Fig. 3)\n", "![noise curves](figures/paper_noise.png)\n",
             f"Settings: Rank-AE and BCE-AE {json.dumps(plan.noise_model)} / {json.dumps(plan.noise_train)} "
             f"(the paper preset made cheaper than the table: no SE attention, fewer epochs, no refit); *default* "
             f"is {default}, and *default, BCE decoder* the same with BCE in place of its decoder's margin loss. "
             "Noise on the training labels only (`model.noise.add_label_noise`, seed 0): "
             "*missing* drops each positive with probability p; *flip* also adds Binomial(|y|, p) random invalid "
             "labels per document. The validation split (10% of the training set, which keeps the best epoch and "
             "chooses the default's blend) and the test set stay clean, as in the paper. Peers train on the noisy "
             "labels of the whole training set.\n"]
    for name, kinds in noise.items():
        for metric in ("p@1", "p@3"):
            parts.append(_noise_grid(name, kinds, metric, plan.rates))
        parts.append(_lost_grid(name, kinds["missing"], plan.rates))
        parts.append(_noise_verdict(name, kinds))
    return "\n".join(parts)


def _noise_grid(name: str, kinds: dict[str, Any], metric: str, rates: tuple[float, ...]) -> str:
    noisy = [r for r in rates if r]
    cols = [f"{kind} {r * 100:.0f}%" for kind in ("missing", "flip") for r in noisy]
    lines = [f"**{name}, clean-test {metric.upper()}**\n", "| method | clean | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for method, by_rate in kinds["missing"].items():
        cells = [by_rate.get(0.0, {}).get(metric)] + [kinds[k].get(method, {}).get(r, {}).get(metric)
                                                     for k in ("missing", "flip") for r in noisy]
        lines.append(f"| {method} | " + " | ".join("—" if c is None else _pct(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _lost(by_rate: dict[float, dict[str, float]], rate: float) -> float | None:
    """P@1 points lost at ``rate`` against the clean run (None when either run is missing)."""
    if 0.0 not in by_rate or rate not in by_rate:
        return None
    return 100 * (by_rate[0.0]["p@1"] - by_rate[rate]["p@1"])


def _lost_grid(name: str, missing: dict[str, Any], rates: tuple[float, ...]) -> str:
    noisy = [r for r in rates if r]
    lines = [f"**{name}, P@1 points lost under missing labels** (clean − noisy)\n",
             "| method | " + " | ".join(f"{r * 100:.0f}%" for r in noisy) + " |", "|---|" + "---|" * len(noisy)]
    for method, by_rate in missing.items():
        cells = [_lost(by_rate, r) for r in noisy]
        lines.append(f"| {method} | " + " | ".join("—" if c is None else f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _noise_verdict(name: str, kinds: dict[str, Any]) -> str:
    lines = []
    for margin, bce in LOSS_PAIRS:
        rank, other = kinds["missing"].get(margin, {}), kinds["missing"].get(bce, {})
        if 0.0 in rank and 0.4 in rank and 0.0 in other and 0.4 in other:
            met, text = report.noise_target(100 * rank[0.0]["p@1"], 100 * rank[0.4]["p@1"],
                                            100 * other[0.0]["p@1"], 100 * other[0.4]["p@1"], names=(margin, bce))
            lines.append(f"- Target ({margin} loses ≤ half the P@1 {bce} loses at 40% missing): "
                         f"**{'met' if met else 'not met'}**: {text}.")
        wins, total = 0, 0
        for kind in ("missing", "flip"):
            r, b = kinds[kind].get(margin, {}), kinds[kind].get(bce, {})
            for rate in (x for x in r if x):
                ours, theirs = _lost(r, rate), _lost(b, rate)
                if ours is not None and theirs is not None:
                    total += 1
                    wins += ours < theirs
        lines.append(f"- {margin} lost less P@1 than {bce} in {wins} of {total} noisy settings.")
    lines += _against_peers(kinds["missing"], "default")
    return f"**{name}**\n\n" + "\n".join(lines) + "\n"


def _against_peers(missing: dict[str, Any], method: str) -> list[str]:
    """Whether ``method`` lost less P@1 under missing labels than every peer, rate by rate."""
    ours = missing.get(method, {})
    peers = [m for m in missing if m not in {name for pair in LOSS_PAIRS for name in pair}]
    lost = {rate: points for rate in ours if rate and (points := _lost(ours, rate)) is not None}
    if not peers or not lost:
        return []
    fewer = [f"{rate * 100:.0f}%" for rate, points in lost.items()
             if all((theirs := _lost(missing[p], rate)) is not None and points < theirs for p in peers)]
    which = f" ({', '.join(fewer)})" if fewer else ""
    return [f"- {method} lost less P@1 than every peer ({', '.join(peers)}) under missing labels at "
            f"{len(fewer)} of {len(lost)} rates{which}."]


def ablation_section(results: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown of the ablation (from the table's runs) and its figure."""
    lines = ["### Ablations (paper Fig. 4)\n", "![ablation](figures/paper_ablation.png)\n",
             "Test P@k (%) from the method table's runs: no attention = SE channel attention removed; "
             "BCE-AE = binary cross-entropy instead of the margin ranking loss.\n",
             "| dataset | " + " | ".join(f"{m} P@{k}" for m in ABLATION for k in (1, 3, 5)) + " |",
             "|---|" + "---|" * (3 * len(ABLATION))]
    best = 0
    for name, rows in results.items():
        by = {r["method"]: r for r in rows}
        lines.append(f"| {name} | " + " | ".join(_pct(by[m][f"p@{k}"]) for m in ABLATION for k in (1, 3, 5)) + " |")
        best += max(ABLATION, key=lambda m: by[m]["p@1"]) == "Rank-AE"
    lines.append(f"\nRank-AE (both components) has the best P@1 of the three on {best} of {len(results)} sets.")
    return "\n".join(lines) + "\n"


def _first_reaching(values: list[float], share: float) -> int:
    goal = share * max(values)
    return next(i for i, v in enumerate(values, start=1) if v >= goal)


def convergence_section(results: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown of validation P@1 per epoch: early epochs, best, epochs to 95% of the method's best."""
    lines = ["### Convergence\n", "![convergence](figures/paper_convergence.png)\n",
             "Validation P@1 (%) per epoch of the table's runs (same split, seed and schedule for every method).\n",
             "| dataset | method | epoch 1 | epoch 2 | epoch 3 | best (epoch) | epochs to 95% of best | s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    faster, first = 0, 0
    for name, rows in results.items():
        curves = {r["method"]: r["history"] for r in rows if r["method"] in CONVERGENCE}
        for method, history in curves.items():
            p1 = [h["valid_p@1"] for h in history]
            early = [_pct(p1[i]) if i < len(p1) else "—" for i in range(3)]
            best_epoch = int(np.argmax(p1)) + 1
            lines.append(f"| {name} | {method} | " + " | ".join(early) + f" | {_pct(max(p1))} ({best_epoch}) | "
                         f"{_first_reaching(p1, 0.95)} | {np.mean([h['seconds'] for h in history]):.1f} |")
        pmi, margin = curves["PMI-cosine"], curves["Rank-AE"]
        first += pmi[0]["valid_p@1"] > margin[0]["valid_p@1"]
        faster += _first_reaching([h["valid_p@1"] for h in pmi], 0.95) < _first_reaching(
            [h["valid_p@1"] for h in margin], 0.95)
    lines.append(f"\nPMI-cosine is ahead of the margin loss after epoch 1 on {first} of {len(results)} sets, and "
                 f"reaches 95% of its own best in fewer epochs on {faster} of {len(results)}.")
    return "\n".join(lines) + "\n"


def explain_docs(name: str, test: Corpus, tagger: Tagger, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` seeded test documents of moderate length with every word's attention mass and the top tags."""
    texts = test.texts or []
    candidates = [i for i, t in enumerate(texts) if 20 <= len(tokenize(t)) <= 120] or list(range(len(texts)))
    picks = sorted(np.random.default_rng(seed).choice(candidates, size=min(n, len(candidates)), replace=False))
    index = {token: j for j, token in enumerate(tagger.featurizer.tokens)}
    docs = []
    for i in picks:
        ids, mass = token_attention(tagger.model, tagger.features([texts[i]]))[0]
        weight_of = dict(zip(ids.tolist(), mass.tolist(), strict=True))
        explained = explain(tagger, [texts[i]], k=3, words=8)[0]
        docs.append({"dataset": name, "id": test.ids[i], "labels": test.labels[i], "tags": explained.tags,
                     "top": explained.words,
                     "words": [(t, weight_of.get(index.get(t, -1))) for t in tokenize(texts[i])]})
    return docs


def explain_section(docs: list[dict[str, Any]], page: Path) -> str:
    """Write the highlighted page and return its markdown summary."""
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(report.explain_html(docs, "Rank-AE channel attention on test documents"), encoding="utf-8")
    lines = ["### Attention explanation (paper Fig. 5)\n",
             f"[{page.name}](figures/{page.name}) shades each word of a few seeded test documents by its "
             "channel-attention mass Σ_c A[j, c] (Rank-AE of the method table; `tagger explain --model DIR` "
             "prints the same for any documents). Top words by attention mass:\n"]
    for doc in docs:
        tags = ", ".join(f"{t} {s:.2f}" for t, s in doc["tags"])
        words = ", ".join(f"{w} {m:.1f}" for w, m in doc["top"])
        lines.append(f"- **{doc['dataset']} {doc['id']}** (true: {', '.join(doc['labels'])}; predicted: {tags}): "
                     f"{words}")
    return "\n".join(lines) + "\n"


def _machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as info:  # Linux only, like the benchmark machine
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} cores ({model}), {gpu}; torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "benchmarks", "model"]).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + (" with uncommitted changes to benchmarks/ or model/" if dirty else "")


def meta_section(command: str, commit: str, started: datetime, seconds: float, timings: dict[str, float],
                 plan: Plan, loads: Sequence[tuple[float, ...]]) -> str:
    """Markdown of how the numbers below were produced: command, commit, machine, date, wall time, settings."""
    steps = ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
    load_text = " → ".join("/".join(f"{x:.1f}" for x in load) for load in loads)
    return (f"**Command:** `{command}` (commit {commit}).\n\n"
            f"**Machine:** {_machine()}; load average (1/5/15 min) at start → end: {load_text}.\n\n"
            f"**Date:** {started:%Y-%m-%d %H:%M} UTC; **wall time {seconds / 60:.1f} min** ({steps}).\n\n"
            f"**Settings** (seed 0 everywhere): `{json.dumps(asdict(plan))}`\n")


class _Writer:
    """OUT/results.md with the paper sections, each replaced in place as soon as it is ready."""

    def __init__(self, out: Path) -> None:
        self.path = out / "results.md"
        self.figures = out / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        text = self.path.read_text(encoding="utf-8") if self.path.exists() else "# Results\n"
        self._write(report.ensure_sections(text, ("meta", *SECTIONS), HEADING))

    def section(self, name: str, body: str) -> None:
        """Replace one section."""
        self._write(report.replace_section(self.path.read_text(encoding="utf-8"), name, body))
        log.info("wrote section %s of %s", name, self.path)

    def _write(self, text: str) -> None:
        staging = self.path.with_suffix(".md.tmp")
        staging.write_text(text, encoding="utf-8")
        staging.replace(self.path)


def _table_part(datasets: tuple[str, ...], plan: Plan, sections: set[str], writer: _Writer, workdir: Path) -> None:
    results: dict[str, list[dict[str, Any]]] = {}
    splits: dict[str, tuple[str, int, int]] = {}
    docs: list[dict[str, Any]] = []
    for name in datasets:
        train_corpus, test = load(name, plan)
        rows = run_table(name, train_corpus, test, plan, workdir)
        splits[name] = (quality.DATASETS[name].split(), len(train_corpus), len(test))
        if test.texts is not None and "explain" in sections:
            docs += explain_docs(name, test, rows[0]["tagger"], plan.explain_docs)
        results[name] = [{k: v for k, v in r.items() if k != "tagger"} for r in rows]
    if "table" in sections:
        plots.plot_methods(results, [*VARIANTS, *plan.table_peers], writer.figures / "paper_methods.png")
        writer.section("table", table_section(results, splits, plan))
    if "ablation" in sections:
        plots.plot_ablation(results, ABLATION, writer.figures / "paper_ablation.png")
        writer.section("ablation", ablation_section(results))
    if "convergence" in sections:
        curves = {name: {r["method"]: [h["valid_p@1"] for h in r["history"]] for r in rows
                         if r["method"] in CONVERGENCE} for name, rows in results.items()}
        plots.plot_convergence(curves, writer.figures / "paper_convergence.png")
        writer.section("convergence", convergence_section(results))
    if "explain" in sections:
        writer.section("explain", explain_section(docs, writer.figures / "paper_explain.html") if docs
                       else "_(no text dataset in this run: nothing to explain)_")


def _noise_part(datasets: tuple[str, ...], plan: Plan, writer: _Writer, workdir: Path) -> None:
    noise = {}
    for name in (d for d in datasets if d in NOISE_SETS):
        train_corpus, test = load(name, plan)
        noise[name] = run_noise(name, train_corpus, test, plan, workdir)
    if not noise:
        writer.section("noise", f"_(none of the noise study's sets {NOISE_SETS} was in this run)_")
        return
    plots.plot_noise(noise, writer.figures / "paper_noise.png")
    writer.section("noise", noise_section(noise, plan))


def run(args: argparse.Namespace) -> Path:
    """Run the chosen sections on the chosen datasets; write results.md sections and figures to the folder
    returned (``output_folder``)."""
    plan = QUICK if args.quick else FULL
    datasets = tuple(args.datasets or plan.datasets)
    unknown = sorted(set(datasets) - set(quality.DATASETS))
    if unknown:
        raise ConfigError(f"unknown dataset(s) {unknown}; choose from {sorted(quality.DATASETS)}")
    if not quality.DATA.exists():
        raise ConfigError(f"{quality.DATA} not found: the benchmark reads the shared datasets from there")
    out = output_folder("paper", args.out, args.publish, quick=args.quick)
    started, clock, loads = datetime.now(UTC), time.perf_counter(), [os.getloadavg()]
    commit = _commit()  # now: other commits may land while the benchmark runs
    sections, writer, timings = set(args.sections), _Writer(out), {}
    if sections - {"noise"}:
        _table_part(datasets, plan, sections, writer, args.workdir)
        timings["table runs"] = time.perf_counter() - clock
    if "noise" in sections:
        noise_started = time.perf_counter()
        _noise_part(datasets, plan, writer, args.workdir)
        timings["noise grid"] = time.perf_counter() - noise_started
    loads.append(os.getloadavg())
    command = "tagger bench paper " + " ".join(sys.argv[sys.argv.index("paper") + 1:] if "paper" in sys.argv
                                               else sys.argv[1:])
    writer.section(meta_name(sections), meta_section(command.strip(), commit, started, time.perf_counter() - clock,
                                                     timings, plan, loads))
    return out


def meta_name(sections: set[str]) -> str:
    """The section a run's command, commit and settings go to: ``meta`` for a run with the table, ``meta-noise``
    for a rerun of the noise grid alone, so that it does not leave the table's sections described by its own.

    >>> meta_name({"table", "noise"}), meta_name({"noise"})
    ('meta', 'meta-noise')
    """
    return "meta" if sections - {"noise"} else "meta-noise"


def add_paper_arguments(parser: argparse.ArgumentParser) -> None:
    """The paper benchmark's flags."""
    parser.add_argument("--quick", action="store_true",
                        help="small subsets and few epochs: a smoke run of a couple of minutes, not a measurement")
    add_output_arguments(parser)  # results.md sections and figures/paper_*
    parser.add_argument("--datasets", nargs="+", metavar="NAME",
                        help="datasets to run (default: every shared set; --quick: reuters)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="sections to run and write (default: all)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/paper"), help="scratch files of the peers")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.paper`` (or ``tagger bench paper``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_paper_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        print(f"results in {run(args)}")
    except ConfigError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
