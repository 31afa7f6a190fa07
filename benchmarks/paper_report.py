"""Pure helpers of the paper benchmark: average ranks, noise verdicts, markdown, sections, explain HTML.

Nothing here trains or plots; everything takes plain result rows (dicts with ``"method"`` and
metrics such as ``"p@1"`` in [0, 1]) so it can be tested by hand.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "N_METRICS",
    "P_METRICS",
    "average_ranks",
    "ensure_sections",
    "explain_html",
    "method_table",
    "noise_target",
    "replace_section",
]

P_METRICS = ("p@1", "p@3", "p@5")
N_METRICS = ("ndcg@1", "ndcg@3", "ndcg@5")


def _ranks(scores: Mapping[str, float]) -> dict[str, float]:
    """Rank of each method in one row, 1 = best; ties share their mean rank."""
    values = sorted(scores.values(), reverse=True)
    first = {v: values.index(v) + 1 for v in values}  # best rank a value reaches
    count = {v: values.count(v) for v in values}
    return {m: first[v] + (count[v] - 1) / 2 for m, v in scores.items()}


def average_ranks(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The paper's rank score (Table 2, last row): rank the methods in each row, average per method.

    Each row maps method → score (higher is better); a method missing from a row (not run or
    failed on that dataset) is left out of that row's ranking and of its own average.

    >>> average_ranks([{"a": 0.9, "b": 0.5, "c": 0.5}, {"a": 0.1, "b": 0.7}])
    {'a': 1.5, 'b': 1.75, 'c': 2.5}
    """
    collected: dict[str, list[float]] = {}
    for row in rows:
        for method, rank in _ranks(row).items():
            collected.setdefault(method, []).append(rank)
    return {m: float(np.mean(r)) for m, r in sorted(collected.items())}


def _metric_rows(results: Mapping[str, Sequence[Mapping[str, Any]]], metrics: Sequence[str]) -> list[dict[str, float]]:
    return [{r["method"]: float(r[m]) for r in rows if "error" not in r}
            for rows in results.values() for m in metrics]


def method_table(results: Mapping[str, Sequence[Mapping[str, Any]]], methods: Sequence[str]) -> str:
    """Paper Table 2 as markdown: one row per (dataset, metric), one column per method, in %,
    the best of each row in bold, then the average-rank rows for P@k and nDCG@k ('—': not run)."""
    head = "| dataset | metric | " + " | ".join(methods) + " |\n|---|---|" + "---|" * len(methods) + "\n"
    lines = []
    for name, rows in results.items():
        by_method = {r["method"]: r for r in rows if "error" not in r}
        for metric in (*P_METRICS, *N_METRICS):
            best = max(float(r[metric]) for r in by_method.values())
            cells = [_cell(by_method.get(m), metric, best) for m in methods]
            shown = metric.replace("ndcg", "nDCG").replace("p@", "P@")
            lines.append(f"| {name} | {shown} | " + " | ".join(cells) + " |")
    for label, metrics in (("P@k", P_METRICS), ("nDCG@k", N_METRICS)):
        ranks = average_ranks(_metric_rows(results, metrics))
        lines.append(f"| **rank score** | {label} | " + " | ".join(
            f"{ranks[m]:.2f}" if m in ranks else "—" for m in methods) + " |")
    return head + "\n".join(lines) + "\n"


def _cell(row: Mapping[str, Any] | None, metric: str, best: float) -> str:
    if row is None:
        return "—"
    text = f"{float(row[metric]) * 100:.2f}"
    return f"**{text}**" if float(row[metric]) == best else text


def noise_target(clean_rank: float, noisy_rank: float, clean_bce: float, noisy_bce: float,
                 names: tuple[str, str] = ("Rank-AE", "BCE-AE")) -> tuple[bool, str]:
    """The issue's target at one noise level: Rank-AE loses at most half the P@1 that BCE-AE loses.

    Losses are clean − noisy (in P@1 points when given in %). If BCE-AE loses nothing, the target
    holds only if Rank-AE loses nothing either. ``names``: the margin and BCE models, as the text names them.

    >>> noise_target(90.0, 88.0, 90.0, 80.0)
    (True, 'Rank-AE −2.00 vs BCE-AE −10.00 (ratio 0.20)')
    >>> noise_target(90.0, 84.0, 90.0, 80.0)[0]
    False
    """
    lost_rank, lost_bce = clean_rank - noisy_rank, clean_bce - noisy_bce
    text = f"{names[0]} {_signed(-lost_rank)} vs {names[1]} {_signed(-lost_bce)}"
    if lost_bce <= 0:
        return lost_rank <= 0, text + f" ({names[1]} lost nothing)"
    return lost_rank <= 0.5 * lost_bce, text + f" (ratio {lost_rank / lost_bce:.2f})"


def _signed(value: float) -> str:
    return f"{value + 0.0:+.2f}".replace("-", "−")  # + 0.0 turns −0.0 into 0.0


_MARK = "<!-- paper:{name} -->"
_END = "<!-- /paper:{name} -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the section between ``<!-- paper:NAME -->`` and ``<!-- /paper:NAME -->`` set to
    ``body``; a section not yet there is appended at the end. Everything outside it is kept as is.

    >>> replace_section("a\\n<!-- paper:x -->\\nold\\n<!-- /paper:x -->\\nb\\n", "x", "new")
    'a\\n<!-- paper:x -->\\nnew\\n<!-- /paper:x -->\\nb\\n'
    """
    start, end = _MARK.format(name=name), _END.format(name=name)
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"


def ensure_sections(text: str, names: Sequence[str], heading: str) -> str:
    """Append ``heading`` and empty markers for the sections not yet in ``text``, in ``names`` order."""
    missing = [n for n in names if _MARK.format(name=n) not in text]
    if not missing:
        return text
    if heading not in text:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + heading + "\n"
    for name in missing:
        text = replace_section(text, name, "_(not run yet)_")
    return text


def explain_html(docs: Sequence[Mapping[str, Any]], title: str) -> str:
    """A self-contained HTML page: each document's words shaded by attention mass, with its tags.

    ``docs``: ``{"words": [(token, weight or None)], "tags": [(label, score)], "labels": [...]}``;
    weights are scaled per document (lowest 0, highest 1); None marks a word outside the vocabulary.
    """
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font:15px/1.7 sans-serif;max-width:60em;margin:2em auto}"
             "span.w{border-radius:3px;padding:0 1px}</style>", f"<h1>{html.escape(title)}</h1>"]
    for doc in docs:
        weights = [w for _, w in doc["words"] if w is not None]
        low, high = (min(weights), max(weights)) if weights else (0.0, 1.0)
        spans = []
        for token, weight in doc["words"]:
            alpha = 0.0 if weight is None else (weight - low) / max(high - low, 1e-9)
            spans.append(f"<span class='w' style='background:rgba(255,120,0,{alpha:.2f})'"
                         f" title='{'' if weight is None else f'{weight:.2f}'}'>{html.escape(token)}</span>")
        tags = ", ".join(f"{html.escape(t)} ({s:.2f})" for t, s in doc["tags"])
        parts.append(f"<h3>true: {html.escape(', '.join(doc['labels']))} — predicted: {tags}</h3>"
                     f"<p>{' '.join(spans)}</p>")
    return "\n".join(parts) + "\n"
