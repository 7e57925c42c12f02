"""MaxEnt-Guided Policy Optimization weights (VibeThinker report, DESIGN.md).

D_ME(p) = p log(p / 0.5) + (1 - p) log((1 - p) / 0.5), the KL divergence of Bernoulli(p) from Bernoulli(0.5),
with 0 log 0 = 0; w_ME(p) = exp(-lam * D_ME(p)). The weight is 1 at p = 0.5, 2^-lam at p = 0 or 1, and lam = 0 is
plain GRPO (every weight exactly 1).
"""

from __future__ import annotations

import math

import torch


def _check(p, lam: float) -> None:
    if lam < 0:
        raise ValueError(f"MGPO lambda must be >= 0, got {lam}")
    low, high = (float(p.min()), float(p.max())) if isinstance(p, torch.Tensor) else (p, p)
    if low < 0 or high > 1:
        raise ValueError(f"group accuracy p must lie in [0, 1], got {low if low < 0 else high}")


def max_entropy_deviation(p):
    """D_ME(p || 0.5) for a float or a tensor of group accuracies."""
    if isinstance(p, torch.Tensor):
        p = p.to(torch.float64) if not p.is_floating_point() else p
        return torch.xlogy(p, 2 * p) + torch.xlogy(1 - p, 2 * (1 - p))  # xlogy(0, .) = 0
    return sum(x * math.log(2 * x) for x in (p, 1 - p) if x > 0)


def mgpo_weight(p, lam: float):
    """w_ME(p) = exp(-lam * D_ME(p || 0.5)); floats give a float, tensors a tensor of the same shape."""
    _check(p, lam)
    deviation = max_entropy_deviation(p)
    if isinstance(deviation, torch.Tensor):
        return torch.exp(-lam * deviation)
    return math.exp(-lam * deviation)
