"""Band metrics: the explanation and the truth reduced to frequency bands (the SLIME frequency study of the
DCASE-2022 paper).

The F frequency rows of the grid fall into `n_bands` equal groups, row f in band `f * n_bands // F`: the
grouping of `adapters/explainers/slime.py::segment_index(grid, "frequency", n_bands)`, so SLIME's frequency
components are these bands. A map becomes its band mass (share of the positive relevance in each band), the
time-frequency truth its band share (share of the truth bins in each band); the metrics compare the two.

Shapes: attribution `[B, F, T]` (a singleton channel axis `[B, 1, F, T]` is accepted), tf_mask `[B, F, T]`
bool, band vectors `[B, n_bands]` float64, metric values `[B]`. Ties are exact equalities (float64 sums over
bands of the same size are computed the same way, so equal bands give equal values).

Chance levels: 0 for the band-mass Spearman (a map independent of the truth), (number of top-share bands) /
n_bands for the top-band hit. They are exact when n_bands divides F (equal bands, e.g. 128 mels in 8 bands);
with unequal bands a flat map favours the larger bands.
"""
from __future__ import annotations

import torch

from ..errors import BenchmarkError
from ..registry import metrics
from .context import MetricContext, MetricResult
from .sanity import spearman_correlation

N_BANDS = 8  # the ASD paper's SLIME frequency segmentation


def _grid(attribution: torch.Tensor) -> torch.Tensor:
    if attribution.dim() == 4 and attribution.shape[1] == 1:
        attribution = attribution[:, 0]
    if attribution.dim() != 3:
        raise BenchmarkError(f"band metrics: expected a [B, F, T] map, got shape {tuple(attribution.shape)}")
    return attribution


def band_rows(n_rows: int, n_bands: int = N_BANDS, device: torch.device | str | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of each band, padded: (`[n_bands, S]` long row indices, `[n_bands, S]` bool valid), where S is
    the largest band size; padding points at row 0 and is masked out. Band of row f = f * n_bands // F."""
    n_bands = int(n_bands)
    if not 1 <= n_bands <= n_rows:
        raise BenchmarkError(f"band metrics: n_bands={n_bands} does not fit {n_rows} frequency rows; "
                             f"use 1..{n_rows}")
    band = torch.arange(n_rows, device=device) * n_bands // n_rows
    size = torch.bincount(band, minlength=n_bands)
    start = torch.cumsum(size, 0) - size
    offset = torch.arange(int(size.max()), device=device)
    valid = offset[None, :] < size[:, None]
    rows = torch.where(valid, start[:, None] + offset[None, :], torch.zeros_like(valid, dtype=torch.long))
    return rows, valid


def _band_sums(per_row: torch.Tensor, n_bands: int) -> torch.Tensor:
    """`[B, F]` -> `[B, n_bands]`: the sum over each band's rows (one reduction of the same length per band,
    so two bands with equal rows get bit-identical sums)."""
    rows, valid = band_rows(per_row.shape[-1], n_bands, per_row.device)
    gathered = per_row[:, rows]  # [B, n_bands, S]
    return torch.where(valid, gathered, torch.zeros_like(gathered)).sum(-1)


def band_mass(attribution: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """Share of the positive relevance (relu of the map) in each band: `[B, F, T] -> [B, n_bands]`, rows sum
    to 1; a clip without positive relevance gets the uniform 1 / n_bands."""
    a = _grid(attribution).double().clamp(min=0)
    mass = _band_sums(a.sum(-1), n_bands)
    total = mass.sum(-1, keepdim=True)
    uniform = torch.full_like(mass, 1.0 / mass.shape[-1])
    return torch.where(total > 0, mass / torch.where(total > 0, total, 1.0), uniform)


def band_share(tf_mask: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """Share of the truth's bins in each band: `[B, F, T]` bool `-> [B, n_bands]`, rows sum to 1; an empty
    truth gets the uniform 1 / n_bands."""
    count = _band_sums(_grid(tf_mask).bool().sum(-1).double(), n_bands)
    total = count.sum(-1, keepdim=True)
    uniform = torch.full_like(count, 1.0 / count.shape[-1])
    return torch.where(total > 0, count / torch.where(total > 0, total, 1.0), uniform)


def band_mass_spearman(attribution: torch.Tensor, tf_mask: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """Spearman rank correlation (average ranks for ties) of band mass and band share over the bands: `-> [B]`.
    0 where either vector is constant (a flat map, or a truth spread evenly over the bands): no ordering to
    agree with."""
    return spearman_correlation(band_mass(attribution, n_bands), band_share(tf_mask, n_bands))


def _top(values: torch.Tensor) -> torch.Tensor:
    return values == values.max(dim=-1, keepdim=True).values


def band_top_hit(attribution: torch.Tensor, tf_mask: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """1 if the band of largest mass is one of the bands of largest share, else 0: `-> [B]`. Bands tied at the
    top mass count in expectation over a uniform tie break (the share of them that are top-share bands), so a
    flat map scores its chance exactly (`band_top_hit_chance`)."""
    top_mass = _top(band_mass(attribution, n_bands))
    top_share = _top(band_share(tf_mask, n_bands))
    return (top_mass & top_share).sum(-1).double() / top_mass.sum(-1).double()


def band_top_hit_chance(tf_mask: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """Chance level of `band_top_hit`: (bands of maximal share) / n_bands, `-> [B]`."""
    top_share = _top(band_share(tf_mask, n_bands))
    return top_share.sum(-1).double() / top_share.shape[-1]


# --- registered forms ------------------------------------------------------------------------------

@metrics.register("band_mass_spearman", version=1, needs={"tf_mask"}, family="localisation",
                  higher_is_better=True,
                  summary="Spearman correlation of the map's positive mass and the truth's share over n_bands "
                          "frequency bands (chance 0)")
def band_mass_spearman_metric(ctx: MetricContext, *, n_bands: int = N_BANDS) -> MetricResult:
    attribution, truth = ctx.explanation.attribution, ctx.batch.tf_mask
    values = band_mass_spearman(attribution, truth, n_bands)
    return MetricResult(values={"": values}, chance=torch.zeros_like(values))


@metrics.register("band_top_hit", version=1, needs={"tf_mask"}, family="localisation", higher_is_better=True,
                  summary="1 if the map's top-mass frequency band is a top-share band of the truth "
                          "(chance = top-share bands / n_bands)")
def band_top_hit_metric(ctx: MetricContext, *, n_bands: int = N_BANDS) -> MetricResult:
    attribution, truth = ctx.explanation.attribution, ctx.batch.tf_mask
    return MetricResult(values={"": band_top_hit(attribution, truth, n_bands)},
                        chance=band_top_hit_chance(truth, n_bands).to(attribution.device))
