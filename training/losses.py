"""Training losses for multi-label logits ``(batch, n_classes)`` against soft targets in [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FocalLoss", "make_loss"]


class FocalLoss(nn.Module):
    """Binary focal loss (Lin et al. 2017): BCE-with-logits weighted by ``|y - p| ** gamma``.

    With soft targets the modulating factor uses ``|y - p|``, which equals ``1 - p_t`` for hard targets.
    ``gamma=0`` is plain BCE-with-logits.

    Args:
        gamma (float): focusing strength. (Default: ``2.0``)
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma={gamma} must be >= 0")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        weight = (targets - torch.sigmoid(logits)).abs().pow(self.gamma)
        return (weight * bce).mean()


def make_loss(name: str, *, focal_gamma: float = 2.0) -> nn.Module:
    """``bce`` (``BCEWithLogitsLoss``) or ``focal`` (:class:`FocalLoss`)."""
    if name == "bce":
        return nn.BCEWithLogitsLoss()
    if name == "focal":
        return FocalLoss(focal_gamma)
    raise ValueError(f"unknown loss {name!r}; expected 'bce' or 'focal'")
