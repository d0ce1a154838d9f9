"""Losses for the regression heads: concordance correlation (CCC) and per-target MSE.

The CCC (Lin, 1989) of predictions ``x`` and gold values ``y`` is

    ccc = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)

with population (1/n) moments. Multitask SER heads (valence, arousal, dominance) minimise a
weighted sum of per-target losses ``sum_k w_k (1 - ccc_k)`` (e.g. Parthasarathy & Busso, 2017;
Atmaja & Akagi, 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["ccc_loss", "concordance_cc", "mse_per_target", "weighted_task_loss"]


def _as_2d(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dim() == 1:
        return pred.unsqueeze(1), target.unsqueeze(1)
    if pred.dim() != 2:
        raise ValueError(f"expected (n,) or (n, k) tensors, got shape {tuple(pred.shape)}")
    return pred, target


def concordance_cc(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Concordance correlation coefficient per target.

    Parameters
    ----------
    pred, target
        Tensors of shape ``(n,)`` or ``(n, k)``.
    eps
        Added to the denominator so constant inputs give a finite value.

    Returns
    -------
    torch.Tensor
        Shape ``(k,)`` (``(1,)`` for 1-D inputs).
    """
    pred, target = _as_2d(pred, target)
    mean_p = pred.mean(dim=0)
    mean_t = target.mean(dim=0)
    dp = pred - mean_p
    dt = target - mean_t
    cov = (dp * dt).mean(dim=0)
    var_p = (dp * dp).mean(dim=0)
    var_t = (dt * dt).mean(dim=0)
    return 2.0 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + eps)


def mse_per_target(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per target, shape ``(k,)``."""
    pred, target = _as_2d(pred, target)
    return ((pred - target) ** 2).mean(dim=0)


def weighted_task_loss(per_target: torch.Tensor, task_weights: Sequence[float] | torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Combine per-target losses: ``sum_k w_k L_k``, or their mean when ``task_weights`` is None."""
    if task_weights is None:
        return per_target.mean()
    weights = torch.as_tensor(task_weights, dtype=per_target.dtype, device=per_target.device)
    if weights.shape != per_target.shape:
        raise ValueError(f"task_weights has {weights.numel()} entries for {per_target.numel()} targets")
    return (weights * per_target).sum()


def ccc_loss(pred: torch.Tensor, target: torch.Tensor,
             task_weights: Sequence[float] | torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """CCC loss ``sum_k w_k (1 - ccc_k)`` (the mean of ``1 - ccc_k`` when no weights are given).

    Parameters
    ----------
    pred, target
        Predictions and gold values, ``(n,)`` or ``(n, k)``.
    task_weights
        One weight per target, e.g. ``(alpha, beta, gamma)`` for valence, arousal, dominance.
    eps
        Denominator stabiliser, see :func:`concordance_cc`.

    Returns
    -------
    torch.Tensor
        A scalar; differentiable with respect to ``pred``.
    """
    return weighted_task_loss(1.0 - concordance_cc(pred, target, eps), task_weights)
