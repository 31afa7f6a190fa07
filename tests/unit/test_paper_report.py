"""The paper benchmark's pure helpers: average-rank score, noise target, results.md sections."""

from __future__ import annotations

import pytest

from benchmarks.paper_report import (
    average_ranks,
    ensure_sections,
    explain_html,
    method_table,
    noise_target,
    replace_section,
)


def test_average_rank_by_hand() -> None:
    rows = [
        {"A": 0.90, "B": 0.80, "C": 0.70},  # ranks 1, 2, 3
        {"A": 0.50, "B": 0.60, "C": 0.60},  # B and C tie for 1st and 2nd: 1.5 each; A 3
        {"A": 0.40, "C": 0.30},  # B did not run: A 1, C 2
    ]
    assert average_ranks(rows) == pytest.approx({"A": (1 + 3 + 1) / 3, "B": (2 + 1.5) / 2, "C": (3 + 1.5 + 2) / 3})


def test_method_table_bolds_the_best_and_ends_with_rank_scores() -> None:
    results = {"set": [{"method": "x", **dict.fromkeys(("p@1", "p@3", "p@5", "ndcg@1", "ndcg@3", "ndcg@5"), 0.5)},
                       {"method": "y", **dict.fromkeys(("p@1", "p@3", "p@5", "ndcg@1", "ndcg@3", "ndcg@5"), 0.25)},
                       {"method": "z", "error": "RuntimeError: boom"}]}
    table = method_table(results, ["x", "y", "z"])
    assert "| set | P@1 | **50.00** | 25.00 | — |" in table
    assert "| **rank score** | P@k | 1.00 | 2.00 | — |" in table


@pytest.mark.parametrize(("rank", "bce", "met"), [((80, 77), (80, 70), True), ((80, 74), (80, 70), False),
                                                  ((80, 80), (80, 80), True), ((80, 79), (80, 81), False)])
def test_noise_target(rank: tuple[float, float], bce: tuple[float, float], met: bool) -> None:
    assert noise_target(*rank, *bce)[0] is met


def test_replace_section_changes_only_its_section() -> None:
    text = ("# R\n\nbefore\n<!-- paper:a -->\nold a\n<!-- /paper:a -->\n"
            "middle\n<!-- paper:b -->\nold b\n<!-- /paper:b -->\n")
    new = replace_section(text, "a", "new a\n")
    assert new == text.replace("old a", "new a")
    assert replace_section(new, "a", "new a") == new  # a rerun with the same body changes nothing


def test_replace_section_appends_a_missing_section_and_keeps_backslashes() -> None:
    new = replace_section("# R\n", "c", r"a \d regex-looking body")
    assert new == "# R\n\n<!-- paper:c -->\na \\d regex-looking body\n<!-- /paper:c -->\n"


def test_ensure_sections_adds_heading_and_markers_in_order_once() -> None:
    text = ensure_sections("# R\n\nkept\n", ["x", "y"], "## Paper")
    assert text.index("## Paper") < text.index("<!-- paper:x -->") < text.index("<!-- paper:y -->")
    assert "kept" in text and ensure_sections(text, ["x", "y"], "## Paper") == text


def test_explain_html_escapes_and_shades_by_weight() -> None:
    page = explain_html([{"words": [("<b>", 1.0), ("oil", 3.0), ("zzz", None)], "tags": [("crude", 0.9)],
                          "labels": ["crude"]}], "t")
    assert "&lt;b&gt;" in page and "<b>" not in page.split("<h1>")[1]
    assert "rgba(255,120,0,0.00)'" in page and "rgba(255,120,0,1.00)'" in page
