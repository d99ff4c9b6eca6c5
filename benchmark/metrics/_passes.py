"""Detector passes shared between the metrics of one batch.

Several metrics score the same perturbed inputs (FF and FF-norm; the five L-MAC metrics; deletion and
insertion; both randomisation metrics re-explain with the same randomised detectors). Results are
memoised in the metric context's own `memo`, which the evaluation loop creates once per batch (and once
per clip subset of it, `ctx.subset`), so a metric on another subset in between costs nothing to the others.
The detector passes a shared computation costs are charged to the metric that triggered it (`result`), so
the cell's total of metric passes is what was actually run, whichever metrics a suite lists. A shared value
must not depend on which metric computed it first: metrics get fresh generators of one seed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..compute import examples_per_forward
from .context import MetricContext, MetricResult

ScoreFn = Callable[[torch.Tensor], torch.Tensor]

def shared(ctx: MetricContext, key: tuple, compute: Callable[[], Any], passes: float = 0.0) -> Any:
    """`compute()` once per (context, key), costing `passes` forward passes per clip (plus whatever it
    `charge`s itself); later metrics of the same batch reuse the value for free."""
    if key not in ctx.memo.values:
        ctx.memo.values[key] = compute()
        charge(ctx, forward=passes)
    return ctx.memo.values[key]


def charge(ctx: MetricContext, *, forward: float = 0.0, backward: float = 0.0) -> None:
    """Record detector passes per clip spent for this context's metrics."""
    ctx.memo.forward += forward
    ctx.memo.backward += backward


def result(ctx: MetricContext, values: dict[str, torch.Tensor], chance: torch.Tensor | None = None) -> MetricResult:
    """A `MetricResult` charged with the passes spent since the previous metric of this context."""
    forward, backward = ctx.memo.forward, ctx.memo.backward
    ctx.memo.forward = ctx.memo.backward = 0.0
    return MetricResult(values=values, chance=chance, forward_passes=forward, backward_passes=backward)


def forward_bound(ctx: MetricContext) -> int:
    """Inputs per detector forward when this context's metrics score perturbed copies: the run's bound."""
    return examples_per_forward(ctx.batch.x.device, ctx.forward_bound)


def score_stacked(score: ScoreFn, inputs: torch.Tensor, per_forward: int | None = None) -> torch.Tensor:
    """Scores of a stack of perturbed batches without gradients: `[K, B, 1, F, T] -> [K, B]`.

    The K copies are flattened into one batch axis and scored in chunks of `per_forward` (default: the
    device's bound, `benchmark.compute`), so K percentiles or steps cost K forward passes per clip but only
    ceil(K * B / chunk) detector calls.
    """
    k, b = inputs.shape[:2]
    flat = inputs.reshape(k * b, *inputs.shape[2:])
    chunk = per_forward or examples_per_forward(flat.device)
    with torch.no_grad():
        out = torch.cat([score(flat[i:i + chunk]) for i in range(0, len(flat), chunk)])
    return out.reshape(k, b)


def scores_unless_given(score: ScoreFn, x: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
    """s(x) `[B]`: the caller's if it already has them (one pass saved), else computed without gradients."""
    if scores is not None:
        return scores
    with torch.no_grad():
        return score(x)


def reference_of(ctx: MetricContext) -> torch.Tensor:
    """The detector's normal counterpart of the batch, `[B, 1, F, T]`, computed once per batch."""
    def compute() -> torch.Tensor:
        with torch.no_grad():
            return ctx.detector.reference(ctx.batch.x).detach()
    # counted as one forward pass: a reconstruction or a nearest-neighbour search for most detectors
    return shared(ctx, ("reference",), compute, passes=1.0)
