"""Complexity of a map on its own (no detector, no truth): sparseness (Gini) and entropy.

Both are the L-MAC recipes' SPS and COMP (Chalasani et al. 2020; Bhatt et al. 2020). Entropy grows
with the number of bins, so compare it on one grid only.

Shapes: attribution `[B, ...]` -> `[B]`.
"""
from __future__ import annotations

import torch

from ..registry import metrics
from .context import MetricContext, MetricResult


def sparseness(attribution: torch.Tensor) -> torch.Tensor:
    """Gini index of |a| (1 = all relevance on one bin, 0 = flat): the reference scales |a| by its
    maximum and adds 1e-7, sorts ascending, and takes sum((2i - n - 1) a_i) / (n sum a_i), i = 1..n."""
    a = attribution.reshape(len(attribution), -1).double().abs()
    peak = a.max(dim=-1, keepdim=True).values
    a = a / torch.where(peak > 0, peak, 1.0) + 1e-7
    a = a.sort(dim=-1).values
    n = a.shape[-1]
    i = torch.arange(1, n + 1, dtype=torch.float64, device=a.device)
    return ((2 * i - n - 1) * a).sum(-1) / (n * a.sum(-1))


def complexity(attribution: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of |a| / sum |a| (log n for a flat or all-zero map, 0 for a single bin)."""
    a = attribution.reshape(len(attribution), -1).double().abs()
    total = a.sum(-1, keepdim=True)
    p = torch.where(total > 0, a / torch.where(total > 0, total, 1.0), torch.full_like(a, 1.0 / a.shape[-1]))
    return -torch.xlogy(p, p).sum(-1)


@metrics.register("sparseness", summary="Gini index of |attribution| (L-MAC SPS): 1 = concentrated, 0 = flat",
                  version=1, family="complexity", higher_is_better=True)
def sparseness_metric(ctx: MetricContext) -> MetricResult:
    return MetricResult(values={"": sparseness(ctx.explanation.attribution)})


@metrics.register("complexity", summary="entropy (nats) of |attribution| / sum |attribution| (L-MAC COMP); "
                  "depends on the grid size", version=1, family="complexity", higher_is_better=False)
def complexity_metric(ctx: MetricContext) -> MetricResult:
    return MetricResult(values={"": complexity(ctx.explanation.attribution)})
