"""Planer-paper faithfulness: how much of the anomaly score goes away when the frames the attribution
points at are replaced by the detector's normal counterpart (`detector.reference`).

For p in 90..99 the frames with curve >= quantile(curve, p / 100) (curve = attribution summed over
frequency, signed) are replaced over all mel bins: x' = m * reference + (1 - m) * x, and
FF = max(0, 1 - s(x') / s(x)); for an autoencoder with reference = reconstruction this is exactly the
paper's max(0, 1 - E2 / E1). The segment-based variant replaces whole 1-s chunks that hold a peak,
restricted to annotated frames. FF-norm measures the same drop against the distance of s(x) above
the median normal score, so a detector whose scores never fall near zero is not penalised.

Shapes: x and reference `[B, 1, F, T]`, attribution `[B, F, T]`, frame labels `[B, T]`, results `[P, B]`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..registry import metrics
from ._passes import (
    ScoreFn,
    charge,
    forward_bound,
    reference_of,
    result,
    score_stacked,
    scores_unless_given,
    shared,
)
from .context import PERCENTILES, MetricContext, MetricResult
from .temporal import by_percentile, chunk_any, chunk_frames_for, peak_frames


def replace_frames(x: torch.Tensor, reference: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """x with the selected frames taken from the reference over all mel bins:
    `[B, 1, F, T], [B, 1, F, T], [K, B, T] -> [K, B, 1, F, T]`."""
    return torch.where(frames[:, :, None, None, :], reference.unsqueeze(0), x.unsqueeze(0))


def segment_frames(peaks: torch.Tensor, frame_labels: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Frames of every whole chunk that holds a peak, kept only where annotated: `[P, B, T], [B, T] -> [P, B, T]`."""
    hit = chunk_any(peaks, chunk_frames).repeat_interleave(chunk_frames, dim=-1)
    spread = torch.zeros_like(peaks)
    spread[..., : hit.shape[-1]] = hit  # trailing frames belong to no chunk
    return spread & frame_labels.bool().unsqueeze(0)


def faithfulness_from_scores(scores: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """max(0, 1 - s(x') / s(x)): `[B], [K, B] -> [K, B]`; 0 for a clip whose score is already 0.

    The ratio is only meaningful for non-negative scores (errors, distances): others are refused.
    """
    if (scores < 0).any():
        raise ValueError("ff needs non-negative anomaly scores (it is the relative drop s(x')/s(x)); "
                         "use ff_norm, which measures the drop against the median normal score")
    s = scores.double().unsqueeze(0)
    ratio = perturbed.double() / torch.where(s > 0, s, 1.0)
    return torch.where(s > 0, (1 - ratio).clamp(min=0), torch.zeros_like(ratio))


def normalised_faithfulness_from_scores(scores: torch.Tensor, perturbed: torch.Tensor,
                                        normal_median_score: torch.Tensor | float) -> torch.Tensor:
    """(s(x) - s(x')) / (s(x) - median normal score), clipped to [0, 1]: `[B], [K, B] -> [K, B]`.

    1 = the replacement removed all of the clip's excess over a typical normal clip; a clip not above
    the median normal score has no excess to remove and scores 0.
    """
    s = scores.double().unsqueeze(0)
    excess = s - torch.as_tensor(normal_median_score, dtype=torch.float64, device=s.device)
    drop = s - perturbed.double()
    value = (drop / torch.where(excess > 0, excess, 1.0)).clamp(0, 1)
    return torch.where(excess > 0, value, torch.zeros_like(value))


def distinct_frame_scores(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, frames: torch.Tensor,
                          scores: torch.Tensor | None = None, per_forward: int | None = None
                          ) -> tuple[torch.Tensor, float]:
    """s(x with `frames` replaced) `[K, B]` and the forward passes it cost per clip, scoring each distinct
    perturbed input of a clip once: percentiles whose selections coincide (segment FF's chunks often do) share
    one pass, and an empty selection is x itself, s(x) when `scores` gives it. `frames` `[K, B, T]` bool;
    `per_forward` bounds the inputs of one detector call (`score_stacked`)."""
    k, b, _ = frames.shape
    same = (frames[:, None] == frames[None, :]).all(dim=-1)                    # [K, K, B]
    first = same.to(torch.uint8).argmax(dim=1)                                 # [K, B]: first equal selection
    own = first == torch.arange(k, device=frames.device)[:, None]              # the first of its kind
    if scores is not None:
        own &= frames.any(dim=-1)                                              # empty: s(x), known
    ks, bs = torch.nonzero(own, as_tuple=True)
    scored = None
    if len(ks):
        inputs = torch.where(frames[ks, bs][:, None, None, :], reference[bs], x[bs])      # [U, 1, F, T]
        scored = score_stacked(score, inputs[None], per_forward)[0]
    dtype = x.dtype
    for t in (scored, scores):
        dtype = dtype if t is None else torch.promote_types(dtype, t.dtype)
    values = torch.zeros(k, b, dtype=dtype, device=x.device)
    if scores is not None:
        values[:] = scores[None]
    if scored is not None:
        values[ks, bs] = scored.to(dtype)
    return values.gather(0, first), len(ks) / max(b, 1)


def _frame_scores(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    return distinct_frame_scores(score, x, reference, frames)[0]


def ff(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, attribution: torch.Tensor, *,
       percentiles: Sequence[int] = PERCENTILES, scores: torch.Tensor | None = None,
       selection: str = "area") -> torch.Tensor:
    """Frame-based FF per percentile: `-> [P, B]`. `scores` = s(x) if already known (saves one pass)."""
    perturbed = _frame_scores(score, x, reference, peak_frames(attribution, percentiles, selection))
    return faithfulness_from_scores(scores_unless_given(score, x, scores), perturbed)


def ff_segment(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, attribution: torch.Tensor,
               frame_labels: torch.Tensor, *, chunk_frames: int, percentiles: Sequence[int] = PERCENTILES,
               scores: torch.Tensor | None = None, selection: str = "area") -> torch.Tensor:
    """Segment-based FF per percentile (whole 1-s chunks with a peak, inside annotations): `-> [P, B]`."""
    return _ff_segment(score, x, reference, attribution, frame_labels, chunk_frames=chunk_frames,
                       percentiles=percentiles, scores=scores, selection=selection)[0]


def _ff_segment(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, attribution: torch.Tensor,
                frame_labels: torch.Tensor, *, chunk_frames: int, percentiles: Sequence[int],
                scores: torch.Tensor | None, selection: str, per_forward: int | None = None
                ) -> tuple[torch.Tensor, float]:
    frames = segment_frames(peak_frames(attribution, percentiles, selection), frame_labels, chunk_frames)
    base = scores_unless_given(score, x, scores)
    perturbed, passes = distinct_frame_scores(score, x, reference, frames, base, per_forward)
    return faithfulness_from_scores(base, perturbed), passes


def ff_norm(score: ScoreFn, x: torch.Tensor, reference: torch.Tensor, attribution: torch.Tensor,
            normal_median_score: torch.Tensor | float, *, percentiles: Sequence[int] = PERCENTILES,
            scores: torch.Tensor | None = None, selection: str = "area") -> torch.Tensor:
    """Frame-based FF-norm per percentile: `-> [P, B]`."""
    perturbed = _frame_scores(score, x, reference, peak_frames(attribution, percentiles, selection))
    return normalised_faithfulness_from_scores(scores_unless_given(score, x, scores), perturbed, normal_median_score)


def _peak_replaced_scores(ctx: MetricContext, selection: str) -> torch.Tensor:
    """s(x') for every percentile's peak frames, shared by ff and ff_norm: `[P, B]`."""
    def compute() -> torch.Tensor:
        frames = peak_frames(ctx.explanation.attribution, ctx.percentiles, selection)
        values, passes = distinct_frame_scores(ctx.detector.score, ctx.batch.x, reference_of(ctx), frames, ctx.scores,
                                               forward_bound(ctx))
        charge(ctx, forward=passes)
        return values
    return shared(ctx, ("peak_replaced", selection), compute)


@metrics.register("ff", summary="planer faithfulness, frame-based: max(0, 1 - s(x')/s(x)) with the p-th percentile "
                  "share of frames of the frequency-summed attribution replaced by the reference",
                  version=2, family="faithfulness", higher_is_better=True, params="percentile")
def ff_metric(ctx: MetricContext, *, selection: str = "area") -> MetricResult:
    values = faithfulness_from_scores(ctx.scores, _peak_replaced_scores(ctx, selection))
    return result(ctx, by_percentile(ctx.percentiles, values))


@metrics.register("ff_norm", summary="faithfulness relative to the excess over normal: the score drop of ff's "
                  "replacement divided by s(x) - median normal score, clipped to [0, 1]",
                  version=2, family="faithfulness", higher_is_better=True, params="percentile")
def ff_norm_metric(ctx: MetricContext, *, selection: str = "area") -> MetricResult:
    values = normalised_faithfulness_from_scores(ctx.scores, _peak_replaced_scores(ctx, selection),
                                                 ctx.detector.normal_median_score)
    return result(ctx, by_percentile(ctx.percentiles, values))


@metrics.register("ff_segment", summary="planer faithfulness, segment-based: whole 1-s chunks holding a peak, "
                  "restricted to annotated frames, replaced by the reference (published for planer-paper parity, "
                  "not ranked: a map with peaks everywhere replaces the whole annotation, so the random map wins)",
                  version=2, needs={"intervals"}, family="faithfulness", higher_is_better=True, params="percentile",
                  ranked=False)
def ff_segment_metric(ctx: MetricContext, *, selection: str = "area") -> MetricResult:
    values, passes = _ff_segment(ctx.detector.score, ctx.batch.x, reference_of(ctx), ctx.explanation.attribution,
                                 ctx.batch.frame_labels, chunk_frames=chunk_frames_for(ctx.spec.frames_per_second),
                                 percentiles=ctx.percentiles, scores=ctx.scores, selection=selection,
                                 per_forward=forward_bound(ctx))
    charge(ctx, forward=passes)
    return result(ctx, by_percentile(ctx.percentiles, values))
