"""Quantiles, ranks and tie-aware top-k counts shared by the metrics, batched over the leading axes.

Every function works on the last axis of `values: [..., N]` and computes in float64, so thresholds
compare exactly with the values they were taken from (a tie at the threshold is a tie, not a rounding).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def quantile_linear(values: torch.Tensor, q: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Quantiles with linear interpolation (numpy's default method): `[..., N], [P] -> [P, ...]`.

    Written out rather than `torch.quantile` because that caps the input size and interpolates with a
    different rounding; this one returns exactly a data value whenever the position falls on one.
    """
    values = values.double()
    n = values.shape[-1]
    q = torch.as_tensor(q, dtype=torch.float64, device=values.device)
    ordered = values.sort(dim=-1).values
    position = q * (n - 1)
    lo = position.floor().long().clamp(0, n - 1)
    hi = position.ceil().long().clamp(0, n - 1)
    t = position - lo
    below = ordered.index_select(-1, lo).movedim(-1, 0)
    above = ordered.index_select(-1, hi).movedim(-1, 0)
    step = above - below
    t = t.reshape(-1, *([1] * (below.dim() - 1)))
    # numpy's lerp: interpolate from the nearer end, so t = 0 and t = 1 give the data values exactly
    return torch.where(t >= 0.5, above - step * (1 - t), below + step * t)


def at_or_above_percentiles(values: torch.Tensor, percentiles: Sequence[int]) -> torch.Tensor:
    """Selections `values >= quantile(values, p / 100)` for each percentile: `[..., N] -> [P, ..., N]` bool."""
    thresholds = quantile_linear(values, [p / 100 for p in percentiles])
    return values.double().unsqueeze(0) >= thresholds.unsqueeze(-1)


SELECTIONS = ("area", "inclusive")
TIE_SEED = 0  # the seeded draw that breaks ties in an area-matched selection


def share_count(n: int, percentile: float) -> int:
    """Elements a p-th percentile selection keeps of n: n - ceil(p/100 (n - 1)), what `>= quantile` keeps of
    distinct values (41, 21, 5 of 401 frames at p = 90, 95, 99): the area-matched rule equals the planer
    paper's on a map without ties."""
    return n - math.ceil(percentile / 100 * (n - 1) - 1e-9)


def random_tie_rank(values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """0-based descending rank along the last axis with ties in a seeded uniformly random order:
    `[..., N] -> [..., N]` long (so `rank < k` keeps exactly k elements, whatever the ties)."""
    values = values.double()
    generator = generator or torch.Generator().manual_seed(TIE_SEED)
    keys = torch.rand(values.shape, generator=generator, dtype=torch.float64).to(values.device)
    by_key = keys.argsort(dim=-1)
    # stable descending sort of the values in key order: equal values end up in random order
    order = by_key.gather(-1, values.gather(-1, by_key).argsort(dim=-1, descending=True, stable=True))
    position = torch.arange(values.shape[-1], device=values.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, position)


def top_share_percentiles(values: torch.Tensor, percentiles: Sequence[int], *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Exactly `share_count(N, p)` of the largest values for each percentile, ties at the threshold broken by
    a seeded uniform draw: `[..., N] -> [P, ..., N]` bool. A blocky map (tied segments) selects the same area
    as a continuous one, and a constant map selects a uniformly random share (its chance level)."""
    n = values.shape[-1]
    rank = random_tie_rank(values, generator)
    counts = torch.tensor([share_count(n, p) for p in percentiles], device=values.device)
    return rank.unsqueeze(0) < counts.reshape(-1, *([1] * values.dim()))


def percentile_selection(values: torch.Tensor, percentiles: Sequence[int], selection: str = "area") -> torch.Tensor:
    """The p-th percentile selection of every metric that thresholds a map: "area" (`top_share_percentiles`,
    the default) or "inclusive" (`values >= quantile`, the planer paper's rule, which gives a tied segment
    at the threshold all of its area): `[..., N] -> [P, ..., N]` bool."""
    if selection == "area":
        return top_share_percentiles(values, percentiles)
    if selection == "inclusive":
        return at_or_above_percentiles(values, percentiles)
    raise ValueError(f"selection {selection!r}: use one of {', '.join(SELECTIONS)}")


def descending_rank(values: torch.Tensor) -> torch.Tensor:
    """0-based rank of each element in descending order, ties in index order: `[..., N] -> [..., N]` long."""
    order = values.argsort(dim=-1, descending=True, stable=True)
    position = torch.arange(values.shape[-1], device=values.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, position)


def top_fraction_mask(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """The `round(fraction * N)` largest elements (ties in index order), so the stated sparsity holds
    exactly even for flat maps: `[..., N] -> [..., N]` bool."""
    k = int(round(fraction * values.shape[-1]))
    return descending_rank(values) < k


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ascending ranks with ties given their average rank (scipy's `rankdata`): `[..., N]` float64."""
    ordered, order = values.double().sort(dim=-1, stable=True)
    n = values.shape[-1]
    index = torch.arange(n, device=values.device).expand_as(order)
    first, last = _tie_group_bounds(ordered, index)
    ranks_sorted = (first + last).double() / 2 + 1
    return torch.empty_like(ranks_sorted).scatter_(-1, order, ranks_sorted)


def _tie_group_bounds(ordered: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For sorted values, the first and last index of each element's group of equal values."""
    n = ordered.shape[-1]
    differs = ordered[..., 1:] != ordered[..., :-1]
    edge = torch.ones_like(differs[..., :1])
    starts = torch.cat([edge, differs], dim=-1)
    ends = torch.cat([differs, edge], dim=-1)
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=-1).values
    last_rev = torch.where(ends, index, torch.full_like(index, n)).flip(-1).cummin(dim=-1).values
    return first, last_rev.flip(-1)


def group_end_index(ordered: torch.Tensor) -> torch.Tensor:
    """For values sorted along the last axis, the index of the last element equal to each one."""
    index = torch.arange(ordered.shape[-1], device=ordered.device).expand_as(ordered)
    return _tie_group_bounds(ordered, index)[1]


def expected_top_k_hits(values: torch.Tensor, truth: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Expected number of `truth` elements among the k largest values when ties at the k-th value are
    broken uniformly at random (so a flat map scores exactly the truth fraction, not an index artefact).

    values `[B, N]`, truth `[B, N]` bool, k `[B]` long (0 <= k <= N) -> `[B]` float64.
    """
    values = values.double()
    ordered = values.sort(dim=-1, descending=True).values
    kth = ordered.gather(-1, (k - 1).clamp(min=0).unsqueeze(-1))
    above = values > kth
    tied = values == kth
    n_above = above.sum(-1)
    hits_above = (above & truth).sum(-1).double()
    tied_in_truth = (tied & truth).sum(-1).double()
    expected = hits_above + (k - n_above).double() * tied_in_truth / tied.sum(-1).clamp(min=1).double()
    return torch.where(k > 0, expected, torch.zeros_like(expected))
