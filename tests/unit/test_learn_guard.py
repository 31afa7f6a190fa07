"""The learner's guard (worker.learn.rounds.verdict) on per-document scores built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from worker.learn.rounds import largest_boost, net_gain, verdict


def _rows(n: int, p1_hits: int, ndcg: float) -> dict[str, np.ndarray]:
    """Per-document scores of one model: ``p1_hits`` of ``n`` documents right at 1, every nDCG@5 = ``ndcg``."""
    return {"p@1": np.array([1.0] * p1_hits + [0.0] * (n - p1_hits)), "ndcg@5": np.full(n, ndcg)}


def test_a_round_that_learns_the_corrections_and_keeps_held_out_is_promoted() -> None:
    heldout = {"live": _rows(100, 60, 0.60), "candidate": _rows(100, 60, 0.60)}
    judged = {"live": _rows(50, 20, 0.40), "candidate": _rows(50, 25, 0.45)}
    assert verdict(heldout, judged, epsilon=0.01) == ""


def test_a_significant_held_out_drop_is_rejected_whatever_the_slice_gained() -> None:
    # p@1 hits 60 -> 40 of 100: every changed document went 1 -> 0, drop 0.2; d has 20 ones and 80 zeros,
    # sd = sqrt(20*0.8^2 + 80*0.2^2) / sqrt(99) = 0.4020, se 0.0402; 0.01 + 1.645 * 0.0402 = 0.0761 < 0.2
    heldout = {"live": _rows(100, 60, 0.60), "candidate": _rows(100, 40, 0.60)}
    judged = {"live": _rows(50, 10, 0.30), "candidate": _rows(50, 40, 0.80)}
    assert verdict(heldout, judged, epsilon=0.01).startswith("held-out p@1 dropped by 0.2000")


def test_a_round_that_loses_more_on_the_slice_than_it_gains_on_held_out_is_rejected() -> None:
    # held-out p@1 +0.01, nDCG@5 +0.01; slice p@1 -0.02 (20 -> 19 of 50), nDCG@5 -0.01: net -0.01
    heldout = {"live": _rows(100, 60, 0.60), "candidate": _rows(100, 61, 0.61)}
    judged = {"live": _rows(50, 20, 0.40), "candidate": _rows(50, 19, 0.39)}
    assert verdict(heldout, judged, epsilon=0.01) == (
        "no net gain over held-out and corrections slice (held-out p@1 +0.0100, held-out ndcg@5 +0.0100, "
        "slice p@1 -0.0200, slice ndcg@5 -0.0100)")


def test_a_poisoned_round_on_a_small_held_out_set_is_rejected_by_its_net_loss() -> None:
    # Stack Exchange biology, poisoned round (docs/results.md): 198 held-out questions, P@1 0.5808 -> 0.5455
    # (115 -> 108 right: 19 lost, 12 gained), nDCG@5 0.6146 -> 0.5894; its slice of random labels P@1 0 -> 0,
    # nDCG@5 0.0126 -> 0.0128. P@1: d has 19 ones, 12 minus ones, mean 7/198 = 0.0354, se 0.0281, limit
    # 0.01 + 1.645 * 0.0281 = 0.0562. nDCG@5: d = 0.0252 - linspace(-0.3, 0.3), se 0.0124, limit 0.0303.
    # Both inside the noise allowance: only the net rule is left to catch it.
    live_p1 = np.array([1.0] * 115 + [0.0] * 83)
    cand_p1 = live_p1.copy()
    cand_p1[:19] = 0.0  # 19 documents lost at 1
    cand_p1[115:127] = 1.0  # 12 gained
    heldout = {"live": {"p@1": live_p1, "ndcg@5": np.full(198, 0.6146)},
               "candidate": {"p@1": cand_p1, "ndcg@5": np.full(198, 0.5894) + np.linspace(-0.3, 0.3, 198)}}
    judged = {"live": _rows(86, 0, 0.0126), "candidate": _rows(86, 0, 0.0128)}
    reason = verdict(heldout, judged, epsilon=0.01)
    # net: -7/198 - 0.0252 + 0 + 0.0002 = -0.0604
    assert round(net_gain(heldout, judged), 4) == -0.0604
    assert reason == ("no net gain over held-out and corrections slice (held-out p@1 -0.0354, held-out ndcg@5 "
                      "-0.0252, slice p@1 +0.0000, slice ndcg@5 +0.0002)")


@pytest.mark.parametrize(("heldout", "judged", "net"), [
    # a small held-out loss bought by a larger slice gain: held-out p@1 -0.01, nDCG@5 -0.005; slice p@1
    # +0.02, nDCG@5 +0.01
    ({"live": _rows(100, 60, 0.600), "candidate": _rows(100, 59, 0.595)},
     {"live": _rows(50, 20, 0.40), "candidate": _rows(50, 21, 0.41)}, 0.015),
    # a held-out gain with a slightly lower slice, like cooking's margin arm, round 6, with the new-label
    # boost (docs/results.md): held-out p@1 +0.013 (740 -> 753 of 1000), nDCG@5 +0.007; slice nDCG@5 -0.0033
    ({"live": _rows(1000, 740, 0.700), "candidate": _rows(1000, 753, 0.707)},
     {"live": _rows(100, 47, 0.4714), "candidate": _rows(100, 47, 0.4681)}, 0.0167),
])
def test_a_round_with_a_net_gain_is_promoted(heldout: dict[str, dict[str, np.ndarray]],
                                             judged: dict[str, dict[str, np.ndarray]], net: float) -> None:
    assert round(net_gain(heldout, judged), 4) == net
    assert verdict(heldout, judged, epsilon=0.01) == ""


def test_the_largest_boost_within_the_cost_is_chosen_and_the_search_stops_at_the_first_too_dear() -> None:
    held_out_p1 = {0.0: 0.600, 0.01: 0.603, 0.02: 0.596, 0.03: 0.590, 0.05: 0.599}
    tried: list[float] = []

    def p1(weight: float) -> float:
        tried.append(weight)
        return held_out_p1[weight]

    # floor 0.600 - 0.005 = 0.595: 0.01 and 0.02 qualify, 0.03 costs 0.010 and ends the search
    assert largest_boost(p1, 0.005, (0.01, 0.02, 0.03, 0.05)) == 0.02
    assert tried == [0.0, 0.01, 0.02, 0.03]


def test_no_boost_when_even_the_smallest_costs_too_much() -> None:
    assert largest_boost(lambda w: 0.6 - w, 0.005, (0.01, 0.02)) == 0.0
