"""The epoch loop: seeded mini-batch Adam(W) over one network, validation P@1 after each epoch, early stopping,
and recovery from divergence (restarts from the best state at a lower rate).

``fit`` trains an :class:`EpochLoop` and returns its per-epoch history and the best state seen on validation;
``fit_blind`` trains for a fixed epoch count (a refit on every document). ``model.trainer`` decides what to
train and what to serve beside it; ``model.finetune`` runs the same loop on corrections.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from model.config import TrainConfig
from model.errors import ModelError
from model.metrics import evaluate, frequency_ranking
from model.optim import optimisers
from model.rank_ae import RankAE, blend_topk, labels_batch

__all__ = ["MAX_RECOVERIES", "SHARES", "WARMUP_EPOCHS", "EpochLoop", "Progress", "diverged", "fit", "fit_blind",
           "fit_folds", "frequency_baseline", "over_budget"]

log = logging.getLogger(__name__)
# How a training run shows its epochs: a bar on a terminal, a log line each (logs that are files), or neither.
Progress = Literal["bar", "log", "off"]


def _batches(n: int, size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for start in range(0, n, size):
        yield order[start:start + size]


class EpochLoop:
    """One training run's state: data on the host, model and optimiser on the device."""

    def __init__(self, model: RankAE, x: sp.csr_matrix, y: sp.csr_matrix, config: TrainConfig,
                 device: torch.device) -> None:
        self.model, self.x, self.y, self.config, self.device = model, x, y, config, device
        self.rng = np.random.default_rng(config.seed)
        self._optimise(config.lr, config.epochs)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                         else nullcontext())

    def _optimise(self, lr: float, epochs: int) -> None:
        self.lr = lr
        self.optimisers = optimisers(self.model, lr, self.config.weight_decay)
        self.schedulers = ([torch.optim.lr_scheduler.CosineAnnealingLR(o, max(epochs, 1)) for o in self.optimisers]
                           if self.config.schedule == "cosine" else [])

    def restart(self, state: dict[str, torch.Tensor], lr_factor: float) -> float:
        """Back to ``state`` with fresh optimisers at ``lr_factor`` times the starting rate; the new rate."""
        self.model.load_state_dict(state)
        self._optimise(self.lr * lr_factor, self.config.epochs)
        return self.lr

    def epoch(self, bar: tqdm) -> float:
        """One pass over the shuffled training data; returns the mean loss."""
        self.model.train()
        total, steps = 0.0, 0
        for rows in _batches(self.x.shape[0], self.config.batch_size, self.rng):
            labels, targets = labels_batch(self.y[rows], self.device)
            with self.autocast:
                parts = self.model.loss(self.model.batch(self.x[rows], self.device), labels, targets)
            loss = parts["loss"].item()
            if not np.isfinite(loss):  # a step on it would poison every weight; the caller recovers
                return loss
            for optimiser in self.optimisers:
                optimiser.zero_grad(set_to_none=True)
            parts["loss"].backward()
            for optimiser in self.optimisers:
                optimiser.step()
            total, steps = total + loss, steps + 1
            bar.set_postfix(loss=f"{total / steps:.4f}", refresh=False)
        for scheduler in self.schedulers:
            scheduler.step()
        return total / max(steps, 1)


# Decoder shares a of the blended score a·σ(D(F(x))) + (1 − a)·σ(tag head) tried on validation each epoch.
SHARES = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
MAX_RECOVERIES = 2  # restarts from the best state at half the rate before training gives up on improving
# Early stopping waits this many epochs for validation P@1 to beat the label-frequency baseline: on small
# data the model sits at the label priors for several epochs before it learns (measured: 480 generated
# documents, 7 epochs at the baseline, then 43% → 84% by epoch 20), and patience alone stopped it there.
WARMUP_EPOCHS = 10


def frequency_baseline(y_valid: sp.csr_matrix) -> float:
    """Validation P@1 of ranking every document's labels by training frequency (label id 0 first)."""
    return evaluate(frequency_ranking(*y_valid.shape), y_valid)["p@1"]


def _validate(loops: Sequence[EpochLoop], x_valid: Sequence[sp.csr_matrix], y_valid: sp.csr_matrix,
              shares: tuple[float, ...]) -> tuple[float, dict[str, float]]:
    """The best decoder share on validation (by P@1, then nDCG@5) and the metrics at that share: each loop's
    rows x_valid[i] (n_i, F) ranked by its network, their rankings pooled against y_valid (Σ n_i, L)."""
    tops = [blend_topk(loop.model, x, 5, shares, device=loop.device) for loop, x in zip(loops, x_valid, strict=True)]
    scored = [(share, evaluate(np.concatenate([top[share] for top in tops]), y_valid)) for share in shares]
    return max(scored, key=lambda item: (item[1]["p@1"], item[1]["ndcg@5"]))


def diverged(mean_loss: float, p1: float, baseline: float, best_p1: float) -> bool:
    """A non-finite loss, or validation P@1 fallen below the label-frequency baseline after beating it."""
    return not np.isfinite(mean_loss) or (best_p1 > baseline > p1)


def fit(loop: EpochLoop, x_valid: sp.csr_matrix, y_valid: sp.csr_matrix,
        progress: Progress) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train ``loop`` until early stopping (or its epochs or time budget run out), judged on validation rows
    x_valid (n, F) and labels y_valid (n, L): the per-epoch history and the best state (its "states" (one),
    "epoch", "p@1", "metrics" and decoder "share"); raises ModelError when it never beat the label-frequency
    baseline."""
    return fit_folds([loop], [x_valid], [y_valid], progress)


def fit_folds(loops: Sequence[EpochLoop], x_valid: Sequence[sp.csr_matrix], y_valid: Sequence[sp.csr_matrix],
              progress: Progress) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """``fit`` for the folds of a cross-validation: every loop trains an epoch in turn, and each epoch is judged
    on all of their validation rows together (loop i's x_valid[i] (n_i, F) and y_valid[i] (n_i, L)), so that
    the epoch and decoder share are chosen on every training document rather than on one split. A loop's
    "states" entry is its network at the best epoch."""
    history: list[dict[str, float]] = []
    shares = SHARES if loops[0].model.tag_head is not None else (loops[0].model.config.ae_share,)
    pooled = sp.vstack(list(y_valid)).tocsr()
    baseline = frequency_baseline(pooled)
    best: dict[str, Any] = {"p@1": -1.0, "epoch": 0, "states": [_snapshot(loop.model) for loop in loops]}
    recoveries, stale = 0, 0
    config = loops[0].config
    budget, began = config.time_budget_s, time.perf_counter()
    with tqdm(total=config.epochs, desc="train", unit="epoch", disable=progress != "bar") as bar:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            mean_loss = float(np.mean([loop.epoch(bar) for loop in loops]))  # non-finite where any fold's is
            share, metrics = _validate(loops, x_valid, pooled, shares)
            history.append({"epoch": epoch, "loss": mean_loss, "seconds": time.perf_counter() - started,
                            "ae_share": share, **{f"valid_{k}": v for k, v in metrics.items()}})
            bar.update()
            if np.isfinite(mean_loss) and metrics["p@1"] > best["p@1"]:
                best = {"p@1": metrics["p@1"], "epoch": epoch, "metrics": metrics, "share": share,
                        "states": [_snapshot(loop.model) for loop in loops]}
                stale = 0
            elif diverged(mean_loss, metrics["p@1"], baseline, best["p@1"]) and recoveries < MAX_RECOVERIES:
                recoveries += 1
                rates = [loop.restart(state, 0.5) for loop, state in zip(loops, best["states"], strict=True)]
                rate = rates[0]
                log.warning("training diverged at epoch %d (loss %.4g, validation P@1 %.2f%%, label-frequency "
                            "baseline %.2f%%): back to epoch %d's state at learning rate %.3g",
                            epoch, mean_loss, 100 * metrics["p@1"], 100 * baseline, best["epoch"], rate)
                stale = 0
                continue
            else:
                stale += 1
            bar.set_postfix(loss=f"{mean_loss:.4f}", valid_p1=f"{100 * metrics['p@1']:.2f}%",
                            best=f"{100 * best['p@1']:.2f}%")
            log.log(logging.INFO if progress == "log" else logging.DEBUG,
                    "epoch %d of at most %d: loss %.4f, validation P@1 %.2f%% (best %.2f%%, epoch %d), %.1f s", epoch,
                    config.epochs, mean_loss, 100 * metrics["p@1"], 100 * best["p@1"], best["epoch"],
                    history[-1]["seconds"])
            warming_up = best["p@1"] <= baseline and epoch < WARMUP_EPOCHS
            if stale >= config.patience and not warming_up:
                log.info("early stop after epoch %d; best epoch %d", epoch, best["epoch"])
                break
            if budget and over_budget(time.perf_counter() - began, history[-1]["seconds"], budget):
                log.info("time budget of %.0f s reached after epoch %d; best epoch %d", budget, epoch, best["epoch"])
                break
    _require_learning(best, baseline, recoveries, plateaued=stale >= config.patience)
    return history, best


def over_budget(elapsed: float, last_epoch: float, budget: float) -> bool:
    """Whether another epoch as long as the last would end past ``budget`` seconds of training.

    >>> over_budget(30.0, 4.0, 40.0), over_budget(37.0, 4.0, 40.0)
    (False, True)
    """
    return elapsed + last_epoch > budget


def _require_learning(best: dict[str, Any], baseline: float, recoveries: int, plateaued: bool) -> None:
    """Refuse a model that stopped improving below ranking labels by frequency (training failed); only
    warn about one that ran out of epochs first (it may be undertrained rather than failed)."""
    if best["epoch"] > 0 and best["p@1"] >= baseline:
        return
    reached = max(best["p@1"], 0.0)
    restarts = f" (after {recoveries} restart(s) at a lower rate)" if recoveries else ""
    below = (f"the best validation P@1 ({100 * reached:.2f}%){restarts} is below the {100 * baseline:.2f}% of "
             f"always predicting the most frequent labels")
    if not plateaued and best["epoch"] > 0:
        log.warning("%s after the last epoch: give it more --epochs", below)
        return
    raise ModelError(f"training failed: {below}; try --lr a tenth of the current one, check that the inputs "
                     f"carry the labels' signal, or train the default preset")


def _snapshot(model: RankAE) -> dict[str, torch.Tensor]:
    return copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})


def fit_blind(loop: EpochLoop, epochs: int, progress: Progress) -> None:
    """Train for a fixed number of epochs with no validation (the refit on all training documents)."""
    log.info("refit on all %d training documents for %d epochs", loop.x.shape[0], epochs)
    with tqdm(total=epochs, desc="refit", unit="epoch", disable=progress != "bar") as bar:
        for _ in range(epochs):
            loop.epoch(bar)
            bar.update()
