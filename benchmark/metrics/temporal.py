"""Temporal overlap of the attribution's peaks with annotated anomalies (planer paper and sed_eval).

The attribution is collapsed to a frame curve (summed over frequency, signed, as the planer code does);
its peaks at percentile p are the `share_count(T, p)` highest frames, ties at the threshold broken by a
seeded draw (`selection="area"`, the default), or every frame with curve >= quantile(curve, p / 100)
(`selection="inclusive"`, the planer paper's rule: on a blocky map it selects whole tied segments, so a
coarse explainer replaces more frames and looks more faithful by area alone). Both agree on maps without
ties.

Shapes: attribution `[B, F, T]`, frame labels `[B, T]` bool, per-percentile results `[P, B]`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..registry import metrics
from ._ranking import percentile_selection, random_tie_rank
from .context import PERCENTILES, MetricContext, MetricResult


def frame_curve(attribution: torch.Tensor) -> torch.Tensor:
    """Attribution summed over frequency, signed: `[B, F, T] -> [B, T]` float64."""
    return attribution.double().sum(dim=1)


def peak_frames(attribution: torch.Tensor, percentiles: Sequence[int] = PERCENTILES,
                selection: str = "area") -> torch.Tensor:
    """The frames of the curve's p-th percentile selection (module docstring): `[B, F, T] -> [P, B, T]` bool."""
    return percentile_selection(frame_curve(attribution), percentiles, selection)


def chunk_frames_for(frames_per_second: float) -> int:
    """Frames in a 1-s chunk: round(frames per second), 40 on the planer grid, 31 on the DCASE grid."""
    return int(round(frames_per_second))


def chunk_any(frames: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Whether each whole chunk holds a True frame; trailing frames that fill no chunk are ignored:
    `[..., T] -> [..., T // chunk_frames]` bool."""
    n_chunks = frames.shape[-1] // chunk_frames
    whole = frames[..., : n_chunks * chunk_frames]
    return whole.reshape(*frames.shape[:-1], n_chunks, chunk_frames).any(dim=-1)


def precision_recall_f1(tp: torch.Tensor, n_estimated: torch.Tensor, n_reference: torch.Tensor) -> torch.Tensor:
    """F1 from counts, with precision, recall and F1 each 0 where their denominator is 0."""
    tp, n_estimated, n_reference = tp.double(), n_estimated.double(), n_reference.double()
    precision = torch.where(n_estimated > 0, tp / n_estimated.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(n_reference > 0, tp / n_reference.clamp(min=1), torch.zeros_like(tp))
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / torch.where(total > 0, total, 1.0), torch.zeros_like(tp))


def chunk_f1(attribution: torch.Tensor, frame_labels: torch.Tensor, *, chunk_frames: int,
             percentiles: Sequence[int] = PERCENTILES, selection: str = "area") -> torch.Tensor:
    """Planer chunk F1 per clip and percentile: `[B, F, T], [B, T] -> [P, B]`.

    A chunk is positive if it holds an annotated frame and predicted if it holds a peak;
    TP = positive and predicted, FP = predicted only, FN = positive only; per-clip P, R, F1.
    """
    predicted = chunk_any(peak_frames(attribution, percentiles, selection), chunk_frames)
    positive = chunk_any(frame_labels.bool(), chunk_frames).unsqueeze(0)
    tp = (predicted & positive).sum(-1)
    return precision_recall_f1(tp, predicted.sum(-1), positive.sum(-1).expand_as(tp))


def _runs(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximal runs of True frames as events: `[G, T]` -> row, onset frame, offset frame (exclusive), each `[E]`.

    `nonzero` lists starts and ends in the same row-major order, so the k-th start pairs with the k-th end.
    """
    padded = torch.nn.functional.pad(frames.to(torch.int8), (1, 1))
    step = padded[:, 1:] - padded[:, :-1]
    starts = torch.nonzero(step == 1)
    ends = torch.nonzero(step == -1)
    return starts[:, 0], starts[:, 1], ends[:, 1]


def close_gaps(active: torch.Tensor, window: int) -> torch.Tensor:
    """Frame activity with every gap shorter than `window` frames between two active runs filled (a
    morphological closing: dilation then erosion over `window` frames, odd), the usual joining of an
    event's fragments before events are read off it (dcase_util's minimum event gap): `[..., T]` bool ->
    same. Runs never grow past their outer ends; `window` <= 1 returns the input."""
    if window <= 1:
        return active
    if window % 2 == 0:
        raise ValueError(f"gap-closing window {window} must be odd")
    flat = active.reshape(-1, 1, active.shape[-1]).float()
    # the clip's edge frames repeated outward, so that the edges neither start nor end a gap
    padded = torch.nn.functional.pad(flat, (window - 1, window - 1), mode="replicate")
    pool = torch.nn.functional.max_pool1d
    closed = -pool(-pool(padded, window, stride=1), window, stride=1)
    return (closed > 0.5).reshape(active.shape)


def median_window(median_s: float, frames_per_second: float) -> int:
    """The odd number of frames of a `median_s`-second median filter (1 = no filtering)."""
    n = int(round(median_s * frames_per_second))
    return max(1, n if n % 2 else n + 1)


def median_filter_frames(curve: torch.Tensor, window: int) -> torch.Tensor:
    """Running median of a frame curve over `window` frames (odd), the clip's edge frames repeated outward
    (`scipy.ndimage.median_filter(mode="nearest")` along time): `[..., T] -> [..., T]`. The frame-level
    post-processing of DCASE sound event detection before events are read off an activity curve: a lone
    spike no longer opens an event and a dip no longer splits one. `window` <= 1 returns the input."""
    if window <= 1:
        return curve
    if window % 2 == 0:
        raise ValueError(f"median window {window} must be odd")
    flat = curve.reshape(-1, 1, curve.shape[-1])
    padded = torch.nn.functional.pad(flat, (window // 2, window // 2), mode="replicate")[:, 0]
    return padded.unfold(-1, window, 1).median(dim=-1).values.reshape(curve.shape)


def gap_window(min_gap_s: float, frames_per_second: float) -> int:
    """The odd number of frames that closes gaps up to `min_gap_s` seconds (1 = none closed)."""
    n = int(round(min_gap_s * frames_per_second))
    return n + 1 if n % 2 == 0 else n + 2


def event_f1(attribution: torch.Tensor, frame_labels: torch.Tensor, *, frames_per_second: float,
             percentiles: Sequence[int] = PERCENTILES, collar_s: float = 0.2,
             offset_fraction: float = 0.5, min_gap_s: float = 0.0, median_s: float = 0.0,
             selection: str = "area") -> torch.Tensor:
    """Event-based F1 with sed_eval's definitions, per clip and percentile: `[B, F, T], [B, T] -> [P, B]`.

    Estimated events are runs of peak frames of the frame curve (median-filtered over `median_s` seconds
    first, 0 = not; gaps up to `min_gap_s` seconds between runs filled, 0 = none), reference events runs of
    annotated frames. An estimated event hits a reference
    event when |onset difference| <= collar and |offset difference| <= max(collar, offset_fraction *
    reference length) (sed_eval's `t_collar`, `percentage_of_length`); hits are paired one-to-one by a
    maximum bipartite matching (sed_eval's "optimal" matching).
    """
    curve = median_filter_frames(frame_curve(attribution), median_window(median_s, frames_per_second))
    selected = percentile_selection(curve, percentiles, selection)
    estimated = close_gaps(selected, gap_window(min_gap_s, frames_per_second))
    return event_f1_from_frames(estimated, frame_labels.bool(), frames_per_second=frames_per_second,
                                collar_s=collar_s, offset_fraction=offset_fraction)


def event_f1_from_frames(estimated: torch.Tensor, reference: torch.Tensor, *, frames_per_second: float,
                         collar_s: float = 0.2, offset_fraction: float = 0.5) -> torch.Tensor:
    """Event F1 of estimated frame activity `[P, B, T]` against reference activity `[B, T]` -> `[P, B]`.

    All P x B matchings are solved as one block-diagonal bipartite graph (Hopcroft-Karp in scipy).
    """
    from scipy.sparse import csr_matrix  # imported here: not paid by every process that registers metrics
    from scipy.sparse.csgraph import maximum_bipartite_matching
    n_p, n_b, n_t = estimated.shape
    est_row, est_on, est_off = _runs(estimated.reshape(n_p * n_b, n_t))
    ref_clip, ref_on, ref_off = _runs(reference)
    est_clip = est_row % n_b
    # reference events in a [B, R_max] table so each estimated event meets only its own clip's events
    n_ref = torch.bincount(ref_clip, minlength=n_b)
    first = torch.cumsum(n_ref, 0) - n_ref
    slot = torch.arange(len(ref_clip), device=ref_clip.device) - first[ref_clip]
    r_max = int(n_ref.max()) if len(ref_clip) else 0
    table_on = torch.zeros(n_b, max(r_max, 1), dtype=torch.long, device=reference.device)
    table_off = torch.zeros_like(table_on)
    valid = torch.zeros_like(table_on, dtype=torch.bool)
    table_on[ref_clip, slot] = ref_on
    table_off[ref_clip, slot] = ref_off
    valid[ref_clip, slot] = True

    eps = 1e-9  # guards float rounding exactly at a collar boundary
    collar = collar_s * frames_per_second
    cand_on, cand_off = table_on[est_clip], table_off[est_clip]
    offset_tolerance = torch.clamp(offset_fraction * (cand_off - cand_on).double(), min=collar)
    hits = (valid[est_clip] & ((est_on[:, None] - cand_on).abs() <= collar + eps)
            & ((est_off[:, None] - cand_off).abs() <= offset_tolerance + eps))
    event, slot_hit = torch.nonzero(hits, as_tuple=True)
    # one column per (percentile, clip, reference slot): a reference event is matched at most once per percentile
    column = est_row[event] * max(r_max, 1) + slot_hit
    graph = csr_matrix((np.ones(len(event), dtype=np.int8), (event.cpu().numpy(), column.cpu().numpy())),
                       shape=(len(est_row), n_p * n_b * max(r_max, 1)))
    matched = torch.from_numpy(maximum_bipartite_matching(graph, perm_type="column") >= 0).to(est_row.device)
    tp = torch.bincount(est_row[matched], minlength=n_p * n_b).reshape(n_p, n_b)
    n_est = torch.bincount(est_row, minlength=n_p * n_b).reshape(n_p, n_b)
    return precision_recall_f1(tp, n_est, n_ref.unsqueeze(0).expand(n_p, n_b))


def by_percentile(percentiles: Sequence[int], values: torch.Tensor) -> dict[str, torch.Tensor]:
    """`[P, B]` -> {"90": [B], ...}, the value labels every per-percentile metric uses."""
    return {str(p): v for p, v in zip(percentiles, values, strict=True)}


CHANCE_DRAWS = 64  # random maps per clip behind a Monte-Carlo chance level


def random_map_chance(score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], frame_labels: torch.Tensor,
                      percentiles: Sequence[int], draws: int = CHANCE_DRAWS) -> torch.Tensor:
    """Chance level `[P, B]` of a temporal score: its mean over `draws` maps of i.i.d. uniform frames,
    which know nothing of the truth. `score(maps [D*B, 1, T], labels [D*B, T]) -> [P, D*B]`. The draws
    come from a generator of their own (seed 0), so the level depends on the labels alone."""
    n_b, n_t = frame_labels.shape
    generator = torch.Generator(device=frame_labels.device).manual_seed(0)
    maps = torch.rand(draws * n_b, 1, n_t, generator=generator, device=frame_labels.device)
    values = score(maps, frame_labels.repeat(draws, 1))
    return values.reshape(len(percentiles), draws, n_b).double().mean(dim=1)


@metrics.register("chunk_f1", summary="planer temporal overlap: per-clip F1 of 1-s chunks holding an attribution "
                  "peak (the p-th percentile share of frames of the frequency-summed map) against annotated chunks",
                  version=2, needs={"intervals"}, family="temporal", higher_is_better=True, params="percentile")
def chunk_f1_metric(ctx: MetricContext, *, selection: str = "area") -> MetricResult:
    def score(attribution: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return chunk_f1(attribution, labels, chunk_frames=chunk_frames_for(ctx.spec.frames_per_second),
                        percentiles=ctx.percentiles, selection=selection)
    # a random map's peaks land in most chunks: chance is near 2a/(1+a) for a share a of positive chunks
    chance = random_map_chance(score, ctx.batch.frame_labels, ctx.percentiles)
    values = score(ctx.explanation.attribution, ctx.batch.frame_labels)
    return MetricResult(values=by_percentile(ctx.percentiles, values), chance=by_percentile(ctx.percentiles, chance))


def event_share_frames(attribution: torch.Tensor, frame_labels: torch.Tensor, median: int = 1) -> torch.Tensor:
    """The clip's annotated share of frames, the highest of the frame curve (median-filtered over `median`
    frames first; ties by a seeded draw): `[B, F, T], [B, T] -> [1, B, T]` bool. Events last seconds; at
    p >= 90 a percentile selection keeps well under a second of a 10-s clip, so no estimated event can meet
    an annotated one's offset tolerance."""
    k = frame_labels.bool().sum(-1)
    curve = median_filter_frames(frame_curve(attribution), median)
    return (random_tie_rank(curve) < k[:, None]).unsqueeze(0)


EVENT_THRESHOLDS = ("events", "percentile")


@metrics.register("event_f1", summary="event-based F1 (sed_eval definitions, 200 ms onset collar, offset within "
                  "max(collar, 50 % of the event)) of runs of the top frames (as many as the clip's events cover, "
                  "or the p-th percentile share: threshold = 'percentile') of the 0.5-s median-filtered frame "
                  "curve, gaps up to 0.5 s joined, against annotated events",
                  version=5, needs={"intervals"}, family="temporal", higher_is_better=True, params="percentile",
                  headline=("events",))
def event_f1_metric(ctx: MetricContext, *, collar_s: float = 0.2, offset_fraction: float = 0.5,
                    min_gap_s: float = 0.5, median_s: float = 0.5, selection: str = "area",
                    threshold: str = "events") -> MetricResult:
    if threshold not in EVENT_THRESHOLDS:
        raise ValueError(f"event_f1 threshold {threshold!r}: use one of {', '.join(EVENT_THRESHOLDS)}")
    fps = ctx.spec.frames_per_second
    # unjoined, a map's peaks are runs of a frame or two scattered over the event: none meets the collar;
    # unfiltered, its lone spikes open events of a frame or two that count as false positives
    if threshold == "events":
        def score(attribution: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            share = event_share_frames(attribution, labels, median_window(median_s, fps))
            estimated = close_gaps(share, gap_window(min_gap_s, fps))
            return event_f1_from_frames(estimated, labels.bool(), frames_per_second=fps, collar_s=collar_s,
                                        offset_fraction=offset_fraction)
        chance = random_map_chance(score, ctx.batch.frame_labels, [0])[0]
        values = score(ctx.explanation.attribution, ctx.batch.frame_labels)[0]
        return MetricResult(values={"events": values}, chance={"events": chance})

    def score(attribution: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return event_f1(attribution, labels, frames_per_second=fps, percentiles=ctx.percentiles, collar_s=collar_s,
                        offset_fraction=offset_fraction, min_gap_s=min_gap_s, median_s=median_s,
                        selection=selection)
    chance = random_map_chance(score, ctx.batch.frame_labels, ctx.percentiles)
    values = score(ctx.explanation.attribution, ctx.batch.frame_labels)
    return MetricResult(values=by_percentile(ctx.percentiles, values), chance=by_percentile(ctx.percentiles, chance))
