"""Deletion and insertion curves (MoRF order) with reference replacement.

Bins are ranked by attribution (most relevant first, ties in index order). Deletion replaces the top
k/n of the bins by the detector's normal counterpart, k = 0..n; insertion starts from the reference
and puts the top k/n of the bins of x back. Each curve is the anomaly score relative to s(x), and the
metric is its area over the replaced fraction [0, 1] (trapezoid rule). A faithful map makes the score
collapse early under deletion (low area) and recover early under insertion (high area). Relative
scores, as in `ff`, so deletion_auc is the planer FF extended from frames to bins and all fractions.

Shapes: x and reference `[B, 1, F, T]`, attribution `[B, F, T]`, curves `[n + 1, B]`, areas `[B]`.
"""
from __future__ import annotations

import torch

from ..registry import metrics
from ._passes import ScoreFn, forward_bound, reference_of, result, score_stacked, scores_unless_given, shared
from ._ranking import descending_rank
from .context import MetricContext, MetricResult


def top_bins(attribution: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Cumulative MoRF selections: step k holds the round(k / n * N) most relevant bins:
    `[B, F, T] -> [n + 1, B, F, T]` bool."""
    flat = attribution.reshape(len(attribution), -1)
    rank = descending_rank(flat)
    n_bins = flat.shape[-1]
    counts = torch.round(torch.arange(n_steps + 1, device=flat.device, dtype=torch.float64) / n_steps * n_bins)
    selected = rank.unsqueeze(0) < counts.long().reshape(-1, 1, 1)
    return selected.reshape(n_steps + 1, *attribution.shape)


def _relative(scores: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    s = scores.double().unsqueeze(0)
    return torch.where(s != 0, perturbed.double() / torch.where(s != 0, s, 1.0), torch.ones_like(perturbed.double()))


def _blend(selected: torch.Tensor, source: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """`source` on the selected bins, `background` elsewhere: `[K, B, F, T] -> [K, B, 1, F, T]`."""
    return torch.where(selected.unsqueeze(2), source.unsqueeze(0), background.unsqueeze(0))


def area_under_curve(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid area over equally spaced fractions 0..1: `[n + 1, B] -> [B]`."""
    n_steps = curve.shape[0] - 1
    return (curve[1:] + curve[:-1]).sum(0) / (2 * n_steps)


def perturbation_curves(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, attribution: torch.Tensor, *,
                        n_steps: int = 10, scores: torch.Tensor | None = None, per_forward: int | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion and insertion curves, each `[n + 1, B]`, from 2n - 1 scored inputs per clip: the
    all-reference input ends deletion and starts insertion. `scores` = s(x) if already known; `per_forward`
    bounds the inputs of one detector call."""
    scores = scores_unless_given(score, x, scores)
    selected = top_bins(attribution, n_steps)
    inputs = torch.cat([_blend(selected[1:], reference, x), _blend(selected[1:-1], x, reference)])
    relative = _relative(scores, score_stacked(score, inputs, per_forward))
    deleted, inserted = relative[:n_steps], relative[n_steps:]
    unchanged = torch.ones_like(deleted[:1])
    return torch.cat([unchanged, deleted]), torch.cat([deleted[-1:], inserted, unchanged])


def deletion_auc(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, attribution: torch.Tensor, *,
                 n_steps: int = 10, scores: torch.Tensor | None = None) -> torch.Tensor:
    """Area under the deletion curve, `[B]` (lower = more faithful)."""
    return area_under_curve(perturbation_curves(score, x, reference, attribution, n_steps=n_steps, scores=scores)[0])


def insertion_auc(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, attribution: torch.Tensor, *,
                  n_steps: int = 10, scores: torch.Tensor | None = None) -> torch.Tensor:
    """Area under the insertion curve, `[B]` (higher = more faithful)."""
    return area_under_curve(perturbation_curves(score, x, reference, attribution, n_steps=n_steps, scores=scores)[1])


def _curves(ctx: MetricContext, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    def compute():
        return perturbation_curves(ctx.detector.score, ctx.batch.x, reference_of(ctx), ctx.explanation.attribution,
                                   n_steps=n_steps, scores=ctx.scores, per_forward=forward_bound(ctx))
    return shared(ctx, ("deletion", n_steps), compute, passes=2 * n_steps - 1)


@metrics.register("deletion_auc", summary="area under the MoRF deletion curve: score relative to s(x) as the most "
                  "relevant bins are replaced by the reference in n steps (lower = more faithful)", version=1,
                  family="deletion", higher_is_better=False)
def deletion_auc_metric(ctx: MetricContext, *, n_steps: int = 10) -> MetricResult:
    return result(ctx, {"": area_under_curve(_curves(ctx, n_steps)[0])})


@metrics.register("insertion_auc", summary="area under the MoRF insertion curve: score relative to s(x) as the most "
                  "relevant bins of x are put back into the reference in n steps", version=1,
                  family="deletion", higher_is_better=True)
def insertion_auc_metric(ctx: MetricContext, *, n_steps: int = 10) -> MetricResult:
    return result(ctx, {"": area_under_curve(_curves(ctx, n_steps)[1])})
