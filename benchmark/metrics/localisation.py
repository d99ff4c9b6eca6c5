"""Ground-truth localisation: how well the attribution points at the true anomaly.

The pure functions compare a map with a truth of the same shape, flattened after the clip axis:
attribution `[B, ...]` float against truth `[B, ...]` bool. Registered twice: on the time-frequency
grid against `tf_mask` (`[B, F, T]`), and time-only (suffix `_time`) on the frame curve (attribution
summed over frequency, as in the planer protocol) against the annotated frames (`[B, T]`).

Conventions, chosen so that an uninformative map scores its chance level: ties are broken uniformly at
random in expectation (a flat map has rank accuracy = truth fraction, AUROC = 0.5); a map with no
positive relevance has relevance mass accuracy = truth fraction; an empty truth gives 0 (0.5 for AUROC).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch

from ..registry import metrics
from ._ranking import average_ranks, expected_top_k_hits, group_end_index, percentile_selection, share_count
from .context import PERCENTILES, MetricContext, MetricResult
from .temporal import by_percentile, frame_curve


def _flat(attribution: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return attribution.reshape(len(attribution), -1).double(), truth.reshape(len(truth), -1).bool()


def truth_fraction(truth: torch.Tensor) -> torch.Tensor:
    """Chance level: the share of bins (or frames) that are truth, `[B, ...] -> [B]`."""
    return truth.reshape(len(truth), -1).double().mean(dim=-1)


def relevance_mass_accuracy(attribution: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Share of the positive relevance that lies inside the truth (Arras et al. 2022): `-> [B]`."""
    a, m = _flat(attribution, truth)
    positive = a.clamp(min=0)
    total = positive.sum(-1)
    inside = (positive * m).sum(-1)
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), m.double().mean(-1))


def relevance_rank_accuracy(attribution: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Share of the K highest-ranked bins that are truth, K = truth size (Arras et al. 2022): `-> [B]`."""
    a, m = _flat(attribution, truth)
    k = m.sum(-1)
    return expected_top_k_hits(a, m, k) / k.clamp(min=1)


def pointing_game(attribution: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Whether the maximum of the map lies inside the truth (a tied maximum counts fractionally): `-> [B]`."""
    a, m = _flat(attribution, truth)
    return expected_top_k_hits(a, m, torch.ones(len(a), dtype=torch.long, device=a.device))


def top_k_intersection(attribution: torch.Tensor, truth: torch.Tensor, k: int) -> torch.Tensor:
    """Share of the k highest-ranked bins that are truth (Theiner et al. 2022): `-> [B]`."""
    a, m = _flat(attribution, truth)
    k = min(int(k), a.shape[-1])
    return expected_top_k_hits(a, m, torch.full((len(a),), k, dtype=torch.long, device=a.device)) / max(k, 1)


def pixel_auroc(attribution: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """ROC AUC of the map as a per-bin detector of the truth (ties count one half): `-> [B]`; 0.5 when the
    truth is empty or covers everything."""
    a, m = _flat(attribution, truth)
    n_pos = m.sum(-1).double()
    n_neg = m.shape[-1] - n_pos
    rank_sum = (average_ranks(a) * m).sum(-1)
    u = rank_sum - n_pos * (n_pos + 1) / 2
    defined = (n_pos > 0) & (n_neg > 0)
    return torch.where(defined, u / torch.where(defined, n_pos * n_neg, 1.0), torch.full_like(u, 0.5))


def pixel_auprc(attribution: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Average precision of the map as a per-bin detector of the truth (sklearn's step-wise definition,
    one threshold per distinct value): `-> [B]`; 0 for an empty truth."""
    a, m = _flat(attribution, truth)
    ordered, order = a.sort(dim=-1, descending=True, stable=True)
    hits = m.gather(-1, order).double()
    true_positives = hits.cumsum(-1)
    end = group_end_index(ordered)
    precision_at_group = true_positives.gather(-1, end) / (end + 1).double()
    n_pos = hits.sum(-1)
    return (hits * precision_at_group).sum(-1) / n_pos.clamp(min=1)


def iou_at_percentile(attribution: torch.Tensor, truth: torch.Tensor,
                      percentiles: Sequence[int] = PERCENTILES, selection: str = "area") -> torch.Tensor:
    """IoU of the map's p-th percentile selection with the truth: `-> [P, B]`.

    "area" (default): the `share_count(n, p)` highest bins, with the expected hits over a uniform tie
    break at the threshold (`expected_top_k_hits`; IoU = hits / (k + |truth| - hits)), so a blocky map
    is scored on the same area as a continuous one. "inclusive": every bin >= the p-th quantile."""
    a, m = _flat(attribution, truth)
    if selection == "area":
        n = a.shape[-1]
        size = m.sum(-1).double()
        out = []
        for p in percentiles:
            k = torch.full((len(a),), share_count(n, p), dtype=torch.long, device=a.device)
            hits = expected_top_k_hits(a, m, k)
            out.append(hits / (k.double() + size - hits).clamp(min=1))
        return torch.stack(out)
    selected = percentile_selection(a, percentiles, selection)
    inter = (selected & m).sum(-1).double()
    union = (selected | m).sum(-1).double()
    return inter / union.clamp(min=1)


def iou_chance(truth: torch.Tensor, percentiles: Sequence[int] = PERCENTILES) -> torch.Tensor:
    """Expected IoU at each percentile of a map without ties drawn independently of the truth:
    `[B, ...] -> [P, B]`. Such a map selects s = n - ceil(p/100 (n-1)) of the n bins; s·m/n of them
    fall in a truth of m bins on average, so the chance IoU is (s·m/n) / (s + m - s·m/n) (ratio of
    the expectations; exact as n grows)."""
    m = truth.reshape(len(truth), -1).bool().sum(-1).double()
    n = truth[0].numel()
    s = torch.tensor([share_count(n, p) for p in percentiles], dtype=torch.float64,
                     device=truth.device)[:, None]
    inter = s * m / n
    return inter / (s + m - inter).clamp(min=1)


# --- registered forms ------------------------------------------------------------------------------

ValuesOf = Callable[..., dict[str, torch.Tensor]]


def _on_grid(ctx: MetricContext) -> tuple[torch.Tensor, torch.Tensor]:
    return ctx.explanation.attribution, ctx.batch.tf_mask


def _on_frames(ctx: MetricContext) -> tuple[torch.Tensor, torch.Tensor]:
    return frame_curve(ctx.explanation.attribution), ctx.batch.frame_labels


_TRUTHS = {
    "": (_on_grid, {"tf_mask"}, "the time-frequency mask"),
    "_time": (_on_frames, {"intervals"}, "the annotated frames (map summed over frequency)"),
}


def _bind(view: Callable[[MetricContext], tuple[torch.Tensor, torch.Tensor]], values_of: ValuesOf,
          chance: Callable[[MetricContext, torch.Tensor], torch.Tensor | dict[str, torch.Tensor]],
          ) -> Callable[..., MetricResult]:
    def metric(ctx: MetricContext, **params) -> MetricResult:
        attribution, truth = view(ctx)
        return MetricResult(values=values_of(ctx, attribution, truth, **params), chance=chance(ctx, truth))
    # the parameters (and their defaults) are `values_of`'s keywords: what suites may set and listings show
    keywords = [p for p in inspect.signature(values_of).parameters.values() if p.kind is p.KEYWORD_ONLY]
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=MetricContext)
    metric.__signature__ = inspect.Signature([context, *keywords], return_annotation=MetricResult)
    return metric


def _area(ctx: MetricContext, truth: torch.Tensor) -> torch.Tensor:
    return truth_fraction(truth)


def _register(name: str, summary: str, values_of: ValuesOf,
              chance: Callable[[MetricContext, torch.Tensor], torch.Tensor | dict[str, torch.Tensor]] = _area,
              **extra) -> None:
    """Register `name` against the time-frequency mask and `name_time` against the annotated frames."""
    for suffix, (view, needs, against) in _TRUTHS.items():
        metrics.register(f"{name}{suffix}", summary=f"{summary}, against {against}", version=1, needs=needs,
                         family="localisation", higher_is_better=True, **extra)(_bind(view, values_of, chance))


def _scalar(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> ValuesOf:
    return lambda ctx, attribution, truth: {"": fn(attribution, truth)}


def _top_k_values(ctx: MetricContext, attribution: torch.Tensor, truth: torch.Tensor, *,
                  top_fraction: float = 0.05) -> dict[str, torch.Tensor]:
    k = max(1, round(top_fraction * truth[0].numel()))
    return {"": top_k_intersection(attribution, truth, k)}


def _iou_values(ctx: MetricContext, attribution: torch.Tensor, truth: torch.Tensor, *,
                selection: str = "area") -> dict[str, torch.Tensor]:
    return by_percentile(ctx.percentiles, iou_at_percentile(attribution, truth, ctx.percentiles, selection))


def _half(ctx: MetricContext, truth: torch.Tensor) -> torch.Tensor:
    return torch.full((len(truth),), 0.5, dtype=torch.float64, device=truth.device)


def _iou_chance(ctx: MetricContext, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    return by_percentile(ctx.percentiles, iou_chance(truth, ctx.percentiles))


_register("relevance_mass_accuracy", "share of positive relevance inside the truth", _scalar(relevance_mass_accuracy))
_register("relevance_rank_accuracy", "share of the |truth| top-ranked bins that are truth",
          _scalar(relevance_rank_accuracy))
_register("pointing_game", "1 if the map's maximum lies in the truth", _scalar(pointing_game))
_register("top_k_intersection", "share of the top-k bins (k = top_fraction of the bins) that are truth",
          _top_k_values)
_register("pixel_auroc", "ROC AUC of the map as a per-bin truth detector (chance 0.5)", _scalar(pixel_auroc),
          chance=_half)
_register("pixel_auprc", "average precision of the map as a per-bin truth detector", _scalar(pixel_auprc))
_register("iou_at_percentile", "IoU of the map's p-th percentile share of bins with the truth", _iou_values,
          chance=_iou_chance, params="percentile")
