"""RowAdam: SparseAdam's update with row gathers, checked by hand and against torch's SparseAdam."""

from __future__ import annotations

import pytest
import torch

from model.optim import RowAdam, optimisers


def _sparse_grad(rows: list[int], values: list[list[float]], shape: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.tensor([rows]), torch.tensor(values), shape,
                                   check_invariants=True)  # uncoalesced when rows repeat


def test_first_step_moves_each_touched_entry_by_lr_against_its_summed_gradient() -> None:
    # Adam's first step: m = (1-b1)g, v = (1-b2)g², step size lr·√(1-b2)/(1-b1), so the move is
    # lr·g/|g| = lr·sign(g) (eps aside). Row 2 occurs twice: its gradient is the sum, (1-3, 2+2) = (-2, 4).
    param = torch.nn.Parameter(torch.zeros(3, 2))
    param.grad = _sparse_grad([0, 2, 2], [[0.5, -1.0], [1.0, 2.0], [-3.0, 2.0]], (3, 2))
    RowAdam([param], lr=0.1).step()
    expected = torch.tensor([[-0.1, 0.1], [0.0, 0.0], [0.1, -0.1]])
    assert torch.allclose(param.detach(), expected, atol=1e-6)


def test_rows_a_step_does_not_touch_keep_their_moments() -> None:
    param = torch.nn.Parameter(torch.zeros(3, 2))
    optimiser = RowAdam([param], lr=0.1)
    param.grad = _sparse_grad([0, 2], [[1.0, 1.0], [1.0, 1.0]], (3, 2))
    optimiser.step()
    moments = optimiser.state[param]["exp_avg"][2].clone()  # (1 - 0.9)·1 = 0.1
    param.grad = _sparse_grad([0], [[1.0, 1.0]], (3, 2))
    optimiser.step()
    assert torch.allclose(moments, torch.tensor([0.1, 0.1]))
    assert torch.equal(optimiser.state[param]["exp_avg"][2], moments)
    assert optimiser.state[param]["exp_avg"][0].tolist() == pytest.approx([0.19, 0.19])  # 0.9·0.1 + 0.1


def test_matches_torch_sparse_adam_over_several_steps() -> None:
    torch.manual_seed(0)
    start = torch.randn(50, 8)
    results = []
    for make in (torch.optim.SparseAdam, RowAdam):
        embedding = torch.nn.Embedding(50, 8, sparse=True)
        embedding.weight.data.copy_(start)
        optimiser = make([embedding.weight], lr=0.01)
        generator = torch.Generator().manual_seed(1)
        for _ in range(5):
            ids = torch.randint(0, 50, (40,), generator=generator)  # repeats: gradients to sum
            optimiser.zero_grad()
            embedding(ids).pow(2).sum().backward()
            optimiser.step()
        results.append(embedding.weight.detach())
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_a_dense_gradient_is_refused() -> None:
    param = torch.nn.Parameter(torch.zeros(2, 2))
    param.grad = torch.ones(2, 2)
    with pytest.raises(RuntimeError, match="sparse gradients"):
        RowAdam([param]).step()


def test_optimisers_give_sparse_tables_row_adam_and_the_rest_adamw() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4, sparse=True), torch.nn.Linear(4, 2))
    dense, rows = optimisers(model, lr=1e-3, weight_decay=0.0)
    assert isinstance(dense, torch.optim.AdamW) and isinstance(rows, RowAdam)
    assert [p.shape for p in rows.param_groups[0]["params"]] == [torch.Size([10, 4])]
    assert sorted(tuple(p.shape) for p in dense.param_groups[0]["params"]) == [(2,), (2, 4)]


def test_a_coalesced_gradient_gives_the_same_step_as_its_uncoalesced_form() -> None:
    grad = _sparse_grad([0, 2, 2], [[0.5, -1.0], [1.0, 2.0], [-3.0, 2.0]], (3, 2))
    results = []
    for given in (grad, grad.coalesce()):
        param = torch.nn.Parameter(torch.zeros(3, 2))
        param.grad = given
        RowAdam([param], lr=0.1).step()
        results.append(param.detach())
    assert torch.equal(results[0], results[1])
