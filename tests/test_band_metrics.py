"""Band metrics (explanation and truth reduced to SLIME's frequency bands): hand-computed band vectors, the
Spearman against scipy with ties, the top-band hit with its exact tie expectation and chance, and the
registered forms on a metric context."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from adapters.explainers.slime import segment_index
from benchmark.errors import BenchmarkError
from benchmark.metrics import band_mass, band_mass_spearman, band_share, band_top_hit, band_top_hit_chance
from benchmark.metrics.context import MetricContext
from benchmark.needs import TRUTH_NEEDS
from benchmark.registry import registry
from benchmark.types import Batch, Explanation


def band_mask(b: int, f: int, t: int, n_bands: int, counts: torch.Tensor) -> torch.Tensor:
    """`[b, f, t]` truth with `counts[i, k]` true bins in the first row of band k (f divisible by n_bands)."""
    rows = f // n_bands
    mask = torch.zeros(b, f, t, dtype=torch.bool)
    for k in range(n_bands):
        mask[:, k * rows] = torch.arange(t)[None, :] < counts[:, k, None]
    return mask


def band_map(values: torch.Tensor, f: int, t: int) -> torch.Tensor:
    """`[b, f, t]` map constant over each band's bins at `values[i, k]` (f divisible by the bands)."""
    return values.double().repeat_interleave(f // values.shape[-1], dim=-1)[:, :, None].expand(-1, f, t).clone()


# --- band vectors ------------------------------------------------------------------------------------

def test_band_mass_and_share_on_a_hand_built_example():
    attribution = torch.tensor([[[1.0, -1.0], [2.0, 0.0], [-3.0, 0.5], [0.5, 0.0]],
                                [[-1.0, -2.0], [0.0, -1.0], [-3.0, 0.0], [0.0, 0.0]]])  # [2, 4, 2]
    # positive mass per row 1, 2, 0.5, 0.5 -> bands {0, 1} 3, {2, 3} 1; clip 2 has no positive mass
    assert torch.equal(band_mass(attribution, 2), torch.tensor([[0.75, 0.25], [0.5, 0.5]], dtype=torch.float64))
    assert torch.equal(band_mass(attribution, 4),
                       torch.tensor([[0.25, 0.5, 0.125, 0.125], [0.25] * 4], dtype=torch.float64))
    # a singleton channel axis reads the same
    assert torch.equal(band_mass(attribution[:, None], 2), band_mass(attribution, 2))
    mask = torch.zeros(2, 4, 2, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 1, 1] = mask[0, 2, 0] = mask[0, 3, 0] = mask[0, 3, 1] = True  # bands: 2 and 3 bins
    assert torch.equal(band_share(mask, 2), torch.tensor([[0.4, 0.6], [0.5, 0.5]], dtype=torch.float64))
    assert torch.equal(band_share(mask, 4), torch.tensor([[0.2, 0.2, 0.2, 0.4], [0.25] * 4], dtype=torch.float64))


def test_unequal_bands_follow_slime_frequency_segments():
    # F = 5 rows in 2 bands: rows 0-2 and 3-4 (f * 2 // 5)
    attribution = torch.ones(1, 5, 3)
    assert torch.allclose(band_mass(attribution, 2), torch.tensor([[0.6, 0.4]], dtype=torch.float64))
    for f, n in ((5, 2), (8, 8), (13, 8), (64, 8), (128, 8), (10, 3), (7, 1)):
        one_row = torch.eye(f)[:, :, None]  # clip i: all relevance in row i
        got = band_mass(one_row, n).argmax(-1)
        assert torch.equal(got, segment_index((f, 1), "frequency", n)[:, 0]), (f, n)
        assert torch.equal(band_share(one_row.bool(), n).argmax(-1), got)


def test_band_vectors_sum_to_one_and_reject_impossible_band_counts():
    g = torch.Generator().manual_seed(0)
    attribution = torch.randn(6, 13, 7, generator=g)
    mask = torch.rand(6, 13, 7, generator=g) < 0.2
    assert torch.allclose(band_mass(attribution, 8).sum(-1), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(band_share(mask, 8).sum(-1), torch.ones(6, dtype=torch.float64))
    for n in (0, 14):
        with pytest.raises(BenchmarkError, match="n_bands"):
            band_mass(attribution, n)
    with pytest.raises(BenchmarkError, match=r"\[B, F, T\]"):
        band_mass(attribution.reshape(6, -1), 8)


# --- Spearman ----------------------------------------------------------------------------------------

def test_spearman_against_scipy_with_ties_on_many_clips():
    g = torch.Generator().manual_seed(1)
    b, n, f, t = 300, 8, 16, 6
    mass_levels = torch.randint(0, 4, (b, n), generator=g)  # few levels: many tied bands
    counts = torch.randint(0, 4, (b, n), generator=g)
    mass_levels[0] = 0  # no positive mass: uniform band mass
    mass_levels[1] = 2  # flat map
    counts[2] = 3  # truth spread evenly
    counts[3] = 0
    counts[3, 5] = 1  # a single truth band
    attribution = band_map(mass_levels, f, t) - 0.5 * (mass_levels == 0).repeat_interleave(f // n, -1)[:, :, None]
    mask = band_mask(b, f, t, n, counts)
    got = band_mass_spearman(attribution, mask, n)
    mass, share = band_mass(attribution, n).numpy(), band_share(mask, n).numpy()
    want = []
    for i in range(b):
        if np.ptp(mass[i]) == 0 or np.ptp(share[i]) == 0:
            want.append(0.0)
        else:
            want.append(scipy.stats.spearmanr(mass[i], share[i]).statistic)
    assert got.shape == (b,) and got.dtype == torch.float64
    assert np.allclose(got.numpy(), want, atol=1e-12)
    assert got[0] == 0 and got[1] == 0 and got[2] == 0 and got[3] != 0
    # the ties are real: most clips have tied bands in one of the vectors
    assert sum(len(np.unique(mass[i])) < n for i in range(b)) > 0.9 * b


def test_random_maps_have_spearman_near_zero_and_top_hit_near_chance():
    g = torch.Generator().manual_seed(3)
    b, f, t = 600, 32, 20
    attribution = torch.randn(b, f, t, generator=g)
    mask = torch.zeros(b, f, t, dtype=torch.bool)
    low = torch.randint(0, f - 6, (b,), generator=g)
    height = torch.randint(1, 7, (b,), generator=g)
    start = torch.randint(0, t - 8, (b,), generator=g)
    for i in range(b):
        mask[i, low[i]:low[i] + height[i], start[i]:start[i] + 8] = True
    rho = band_mass_spearman(attribution, mask)
    assert abs(rho.mean().item()) < 0.1
    hit, chance = band_top_hit(attribution, mask), band_top_hit_chance(mask)
    assert abs(hit.mean().item() - chance.mean().item()) < 0.05


def test_a_map_equal_to_the_truth_scores_one():
    g = torch.Generator().manual_seed(4)
    b, n, f, t = 20, 8, 16, 10
    counts = torch.stack([torch.randperm(n, generator=g) + 1 for _ in range(b)])  # distinct shares, no ties
    mask = band_mask(b, f, t, n, counts)
    attribution = mask.float()
    assert torch.equal(band_mass_spearman(attribution, mask, n), torch.ones(b, dtype=torch.float64))
    assert torch.equal(band_top_hit(attribution, mask, n), torch.ones(b, dtype=torch.float64))


# --- top-band hit ------------------------------------------------------------------------------------

def test_top_hit_on_the_truth_band_another_band_a_flat_map_and_tied_shares():
    n, f, t = 8, 16, 4
    single = torch.zeros(1, n, dtype=torch.long)
    single[0, 2] = 3  # the truth lies in band 2 only
    tied = torch.zeros(1, n, dtype=torch.long)
    tied[0, 1] = tied[0, 4] = 2  # two top-share bands
    tied[0, 6] = 1
    mask = band_mask(2, f, t, n, torch.cat([single, tied]))
    assert torch.equal(band_top_hit_chance(mask, n), torch.tensor([1 / 8, 2 / 8], dtype=torch.float64))

    def peaked(*bands: int, base: float = 0.1) -> torch.Tensor:
        levels = torch.full((2, n), base)
        levels[:, list(bands)] = 1.0
        return band_map(levels, f, t)

    assert torch.equal(band_top_hit(peaked(2), mask, n), torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.equal(band_top_hit(peaked(4), mask, n), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(band_top_hit(peaked(6), mask, n), torch.tensor([0.0, 0.0], dtype=torch.float64))
    # tied top mass: the share of the tied bands that are top-share bands
    assert torch.equal(band_top_hit(peaked(1, 3), mask, n), torch.tensor([0.0, 0.5], dtype=torch.float64))
    assert torch.equal(band_top_hit(peaked(1, 2, 4), mask, n), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    # flat maps (positive, and without positive mass) score exactly their chance
    for flat in (torch.full((2, f, t), 0.7), torch.zeros(2, f, t), -torch.ones(2, f, t)):
        assert torch.equal(band_top_hit(flat, mask, n), band_top_hit_chance(mask, n))
    # an empty truth: every band is a top-share band, so any map hits
    empty = torch.zeros(1, f, t, dtype=torch.bool)
    assert band_top_hit(peaked(3)[:1], empty, n).item() == 1.0 and band_top_hit_chance(empty, n).item() == 1.0


# --- registered forms --------------------------------------------------------------------------------

def context(attribution: torch.Tensor, mask: torch.Tensor) -> MetricContext:
    b, f, t = mask.shape
    batch = Batch(ids=[f"clip{i}" for i in range(b)], x=torch.zeros(b, 1, f, t), labels=torch.ones(b, dtype=torch.long),
                  meta=[{} for _ in range(b)], tf_mask=mask, frame_labels=mask.any(1),
                  has_truth=torch.ones(b, dtype=torch.bool))
    return MetricContext(batch=batch, explanation=Explanation(attribution=attribution), detector=None, spec=None,
                         scores=torch.zeros(b), explain=None, generator=torch.Generator().manual_seed(0))


def test_registered_metrics_equal_the_functions_and_report_their_chance():
    g = torch.Generator().manual_seed(5)
    b, f, t = 12, 16, 10
    mask = torch.zeros(b, f, t, dtype=torch.bool)
    for i in range(b):
        mask[i, i % 12:i % 12 + 4, 2:7] = True
    attribution = torch.randn(b, f, t, generator=g) + 2.0 * mask
    ctx = context(attribution, mask)
    metrics = registry("metric")
    for name in ("band_mass_spearman", "band_top_hit"):
        plugin = metrics.get(name)
        assert plugin.version == 1 and plugin.defaults == {"n_bands": 8}
        assert plugin.needs == {"tf_mask"} and plugin.needs & TRUTH_NEEDS  # scored on clips with truth only
        assert plugin.extra["family"] == "localisation" and plugin.extra["higher_is_better"] is True
        assert "chance" in plugin.summary and "\n" not in plugin.summary

    spearman = metrics.get("band_mass_spearman").factory(ctx)
    assert list(spearman.values) == [""]
    assert torch.equal(spearman.values[""], band_mass_spearman(attribution, mask, 8))
    assert torch.equal(spearman.chance, torch.zeros(b, dtype=torch.float64))
    assert spearman.values[""].mean() > 0.5  # the map points at the truth's bands
    hit = metrics.get("band_top_hit").factory(ctx)
    assert torch.equal(hit.values[""], band_top_hit(attribution, mask, 8))
    assert torch.equal(hit.chance, band_top_hit_chance(mask, 8))
    assert hit.values[""].shape == hit.chance.shape == (b,)

    # the parameter reaches the functions
    four = metrics.get("band_mass_spearman").factory(ctx, n_bands=4)
    assert torch.equal(four.values[""], band_mass_spearman(attribution, mask, 4))
    assert not torch.equal(four.values[""], spearman.values[""])
    assert torch.equal(metrics.get("band_top_hit").factory(ctx, n_bands=2).values[""],
                       band_top_hit(attribution, mask, 2))

    # the truth itself as the map: a perfect band ordering wherever the shares are not all equal
    perfect = metrics.get("band_top_hit").factory(context(mask.float(), mask))
    assert torch.equal(perfect.values[""], torch.ones(b, dtype=torch.float64))
