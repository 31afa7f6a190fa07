"""Loss functions against hand-computed values and the pairwise definition."""

from __future__ import annotations

import itertools

import pytest
import torch

from model.loss import bce_loss, cosine_loss, latent_loss, margin_ranking_loss


def pairwise_definition(scores: torch.Tensor, targets: torch.Tensor, m: float) -> float:
    """Eq. 3-4 written literally: loops over labels, max over pairs."""
    total = 0.0
    for row, mask in zip(scores.tolist(), targets.tolist(), strict=True):
        pos = [s for s, t in zip(row, mask, strict=True) if t]
        neg = [s for s, t in zip(row, mask, strict=True) if not t]
        if not pos or not neg:
            continue
        total += sum(max(max(m + n - p, 0.0) for p in pos) for n in neg)
        total += sum(max(max(m + n - p, 0.0) for n in neg) for p in pos)
    return total / len(scores)


def test_three_label_example_by_hand() -> None:
    # positives {0, 2} scored 0.2, 0.5; negative {1} scored 0.9; m = 1
    # L_P = (1 + 0.9 - min(0.2, 0.5)) = 1.7;  L_N = (1 + 0.9 - 0.2) + (1 + 0.9 - 0.5) = 3.1
    scores = torch.tensor([[0.2, 0.9, 0.5]])
    targets = torch.tensor([[True, False, True]])
    assert margin_ranking_loss(scores, targets, 1.0).item() == pytest.approx(4.8)


def test_mean_reduction_averages_l_p_over_negatives_and_l_n_over_positives() -> None:
    # the example above: L_P = 1.7 over |N| = 1 negative; L_N = 3.1 over |P| = 2 positives → 1.7 + 1.55
    scores = torch.tensor([[0.2, 0.9, 0.5]])
    targets = torch.tensor([[True, False, True]])
    assert margin_ranking_loss(scores, targets, 1.0, "mean").item() == pytest.approx(3.25)


def test_mean_reduction_keeps_a_dense_label_set_on_the_scale_of_a_sparse_one() -> None:
    # 1,000 labels, all scored 0: each violated pair costs m = 1. Sum: |N| + |P|; mean: 2 whatever the sizes.
    scores = torch.zeros(2, 1000)
    targets = torch.zeros(2, 1000, dtype=torch.bool)
    targets[0, :2] = True
    targets[1, :20] = True
    assert margin_ranking_loss(scores, targets, 1.0, "sum").item() == pytest.approx(1000.0)
    assert margin_ranking_loss(scores, targets, 1.0, "mean").item() == pytest.approx(2.0)


def test_satisfied_margin_gives_zero() -> None:
    scores = torch.tensor([[3.0, 0.5, 2.0]])
    targets = torch.tensor([[True, False, True]])
    # min positive 2.0 exceeds the only negative 0.5 by 1.5 ≥ m
    assert margin_ranking_loss(scores, targets, 1.0).item() == 0.0


def test_matches_pairwise_definition_on_random_batches() -> None:
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(16, 9, generator=generator)
    targets = torch.rand(16, 9, generator=generator) < 0.3
    for m in (0.0, 0.5, 1.0):
        assert margin_ranking_loss(scores, targets, m).item() == pytest.approx(
            pairwise_definition(scores, targets, m), rel=1e-5)


def test_examples_with_nothing_to_rank_contribute_zero_but_count_in_the_mean() -> None:
    scores = torch.tensor([[0.2, 0.9, 0.5], [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    targets = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    assert margin_ranking_loss(scores, targets, 1.0).item() == pytest.approx(4.8 / 3)


def test_gradient_reaches_every_negative_and_only_the_weakest_positive_through_l_p() -> None:
    scores = torch.tensor([[0.2, 0.9, 0.5, 0.0]], requires_grad=True)
    targets = torch.tensor([[True, False, True, False]])
    margin_ranking_loss(scores, targets, 1.0).backward()
    # L_P: each of 2 negatives pulls the min positive (0) up: -2; L_N: every positive -1, max negative (1) +2
    assert scores.grad.tolist() == [[-3.0, 3.0, -1.0, 1.0]]


def test_cost_is_linear_in_labels() -> None:
    # Memory of the vectorised form is O(batch × L): a 100k-label batch must run without pair tensors.
    scores = torch.randn(4, 100_000)
    targets = torch.zeros(4, 100_000, dtype=torch.bool)
    targets[:, :3] = True
    assert torch.isfinite(margin_ranking_loss(scores, targets, 1.0))


def test_bce_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0]])
    targets = torch.tensor([[True, False]])
    # each label: -ln(0.5); summed over 2 labels
    assert bce_loss(logits, targets).item() == pytest.approx(2 * 0.693147, rel=1e-5)


def test_latent_loss_is_squared_distance_per_example() -> None:
    x_h = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    y_h = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert latent_loss(x_h, y_h).item() == pytest.approx((5.0 + 25.0) / 2)


def test_cosine_loss_ignores_examples_without_labels() -> None:
    pred = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert cosine_loss(pred, target).item() == pytest.approx((1.0 - 0.0 + 0.0) / 2)


@pytest.mark.parametrize("m", [0.5, 1.0])
def test_loss_is_invariant_to_label_order(m: float) -> None:
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.7]])
    targets = torch.tensor([[False, True, True, False]])
    base = margin_ranking_loss(scores, targets, m).item()
    for order in itertools.permutations(range(4)):
        idx = torch.tensor(order)
        assert margin_ranking_loss(scores[:, idx], targets[:, idx], m).item() == pytest.approx(base)
