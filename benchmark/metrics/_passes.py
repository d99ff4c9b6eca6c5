"""Detector passes shared between the metrics of one batch.

Several metrics score the same perturbed inputs (FF and FF-norm; the five L-MAC metrics; deletion and
insertion; both randomisation metrics re-explain with the same randomised detectors). Results are
memoised for the batch in hand: a thread-local single entry, valid while the metric context shows the
same detector and explain function (by identity) and the same inputs, attribution, mask and
percentiles (by value, since the runner builds a fresh context, with fresh tensors, for every metric),
and dropped as soon as another batch arrives. The detector passes a shared computation costs are
charged to the metric that triggered it (`result`), so the cell's total of metric passes is what was
actually run, whichever metrics a suite lists.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch

from .context import MetricContext, MetricResult

ScoreFn = Callable[[torch.Tensor], torch.Tensor]

_memo = threading.local()


def _same_tensor(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or (a.shape == b.shape and a.device == b.device and torch.equal(a, b))


def _hold(ctx: MetricContext) -> None:
    """Keep the memo if `ctx` shows the batch it was filled for, else start an empty one."""
    held = getattr(_memo, "held", None)
    same = (held is not None and held["detector"]() is ctx.detector and held["explain"] is ctx.explain
            and held["percentiles"] == tuple(ctx.percentiles) and _same_tensor(held["x"], ctx.batch.x)
            and _same_tensor(held["attribution"], ctx.explanation.attribution)
            and _same_tensor(held["mask"], ctx.explanation.mask))
    if not same:
        _memo.held = {"detector": weakref.ref(ctx.detector), "explain": ctx.explain,
                      "percentiles": tuple(ctx.percentiles), "x": ctx.batch.x,
                      "attribution": ctx.explanation.attribution, "mask": ctx.explanation.mask}
        _memo.values = {}
        _memo.pending = [0.0, 0.0]


def shared(ctx: MetricContext, key: tuple, compute: Callable[[], Any], passes: float = 0.0) -> Any:
    """`compute()` once per (context, key), costing `passes` forward passes per clip (plus whatever it
    `charge`s itself); later metrics of the same batch reuse the value for free."""
    _hold(ctx)
    if key not in _memo.values:
        _memo.values[key] = compute()
        charge(ctx, forward=passes)
    return _memo.values[key]


def charge(ctx: MetricContext, *, forward: float = 0.0, backward: float = 0.0) -> None:
    """Record detector passes per clip spent for this context's metrics."""
    _hold(ctx)
    _memo.pending[0] += forward
    _memo.pending[1] += backward


def result(ctx: MetricContext, values: dict[str, torch.Tensor], chance: torch.Tensor | None = None) -> MetricResult:
    """A `MetricResult` charged with the passes spent since the previous metric of this context."""
    _hold(ctx)
    (forward, backward), _memo.pending = _memo.pending, [0.0, 0.0]
    return MetricResult(values=values, chance=chance, forward_passes=forward, backward_passes=backward)


def examples_per_forward(device: torch.device) -> int:
    """Inputs per detector forward when scoring perturbed copies (the explainers' default bound)."""
    return 512 if torch.device(device).type == "cuda" else 32


def score_stacked(score: ScoreFn, inputs: torch.Tensor) -> torch.Tensor:
    """Scores of a stack of perturbed batches without gradients: `[K, B, 1, F, T] -> [K, B]`.

    The K copies are flattened into one batch axis and scored in chunks, so K percentiles or steps cost
    K forward passes per clip but only ceil(K * B / chunk) detector calls.
    """
    k, b = inputs.shape[:2]
    flat = inputs.reshape(k * b, *inputs.shape[2:])
    chunk = examples_per_forward(flat.device)
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
