"""Where a model runs: the one device rule shared by training and prediction."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | None = None) -> torch.device:
    """The requested device, or CUDA when present and the CPU otherwise."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
