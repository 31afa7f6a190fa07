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


def _row(p1: float) -> dict[str, float]:
    return {"p@1": p1, "p@3": p1 / 2}


def test_noise_section_counts_the_default_against_its_bce_twin_and_the_peers() -> None:
    from benchmarks.paper import QUICK, noise_section

    clean = {"default": 0.80, "default, BCE decoder": 0.80, "Rank-AE": 0.70, "BCE-AE": 0.70, "peer-a": 0.85,
             "peer-b": 0.84}
    at_40 = {"default": 0.77, "default, BCE decoder": 0.74, "Rank-AE": 0.60, "BCE-AE": 0.65, "peer-a": 0.81,
             "peer-b": 0.82}
    missing = {m: {0.0: _row(clean[m]), 0.4: _row(at_40[m])} for m in clean}
    flip = {m: {0.0: _row(clean[m]), 0.4: _row(at_40[m] - 0.01)} for m in clean}
    text = noise_section({"set": {"missing": missing, "flip": flip}}, QUICK)
    # Lost at 40% missing: default 3, its BCE twin 6 (ratio 0.5: met); Rank-AE 10, BCE-AE 5 (not met).
    assert "| default | 3.00 |" in text and "| default, BCE decoder | 6.00 |" in text
    assert ("Target (default loses ≤ half the P@1 default, BCE decoder loses at 40% missing): **met**: "
            "default −3.00 vs default, BCE decoder −6.00 (ratio 0.50)") in text
    assert "Target (Rank-AE loses ≤ half the P@1 BCE-AE loses at 40% missing): **not met**" in text
    assert "- default lost less P@1 than default, BCE decoder in 2 of 2 noisy settings." in text
    assert "- Rank-AE lost less P@1 than BCE-AE in 0 of 2 noisy settings." in text
    # peer-a lost 4, peer-b 2: the default's 3 beats one of them, so not every peer.
    assert "- default lost less P@1 than every peer (peer-a, peer-b) under missing labels at 0 of 1 rates." in text
    missing["peer-b"][0.4] = _row(0.80)  # now peer-b lost 4 too
    text = noise_section({"set": {"missing": missing, "flip": flip}}, QUICK)
    assert "under missing labels at 1 of 1 rates (40%)." in text


def test_a_noise_only_rerun_writes_its_own_meta_section() -> None:
    from benchmarks.paper import SECTIONS, meta_name

    assert meta_name(set(SECTIONS)) == "meta"
    assert meta_name({"table"}) == "meta"
    assert meta_name({"noise"}) == "meta-noise"  # the table's meta stays as its run wrote it
