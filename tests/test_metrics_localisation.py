"""Localisation metrics against sklearn and slow numpy references, including ties and degenerate truths."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmark.metrics import (
    iou_at_percentile,
    pixel_auprc,
    pixel_auroc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)

PERCENTILES = tuple(range(90, 100))


@pytest.fixture
def maps():
    """Random signed maps `[4, 8, 30]` and masks with a band-limited event each (no ties in the maps)."""
    g = torch.Generator().manual_seed(2)
    b, f, t = 4, 8, 30
    attribution = torch.randn(b, f, t, generator=g, dtype=torch.float64)
    mask = torch.zeros(b, f, t, dtype=torch.bool)
    for i in range(b):
        mask[i, 2 + i:5 + i, 5 * i:5 * i + 8] = True
    attribution[:2] += mask[:2] * 1.5  # two clips localise well, two are noise
    return attribution, mask


def np_rank_hits(a: np.ndarray, m: np.ndarray, k: int) -> float:
    """Top-k hits by plain sorting (valid for maps without ties)."""
    return float(m[np.argsort(-a, kind="stable")[:k]].sum())


def np_rank_hits_random_ties(a: np.ndarray, m: np.ndarray, k: int, draws: int = 2000) -> float:
    """Top-k hits averaged over random tie-breaking (Monte Carlo)."""
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(draws):
        order = np.lexsort((rng.random(a.size), -a))
        total += m[order[:k]].sum()
    return total / draws


def test_random_maps_against_references(maps):
    attribution, mask = maps
    rma = relevance_mass_accuracy(attribution, mask)
    rra = relevance_rank_accuracy(attribution, mask)
    pg = pointing_game(attribution, mask)
    topk = top_k_intersection(attribution, mask, k=12)
    auroc, auprc = pixel_auroc(attribution, mask), pixel_auprc(attribution, mask)
    iou = iou_at_percentile(attribution, mask)
    for i in range(len(mask)):
        a, m = attribution[i].flatten().numpy(), mask[i].flatten().numpy()
        pos = np.clip(a, 0, None)
        assert rma[i].item() == pytest.approx(pos[m].sum() / pos.sum())
        assert rra[i].item() == pytest.approx(np_rank_hits(a, m, int(m.sum())) / m.sum())
        assert pg[i].item() == float(m[np.argmax(a)])
        assert topk[i].item() == pytest.approx(np_rank_hits(a, m, 12) / 12)
        assert auroc[i].item() == pytest.approx(roc_auc_score(m, a))
        assert auprc[i].item() == pytest.approx(average_precision_score(m, a))
        for j, p in enumerate(PERCENTILES):
            sel = a >= np.quantile(a, p / 100)
            assert iou[j, i].item() == pytest.approx((sel & m).sum() / (sel | m).sum())
    # the two localising clips beat the two noise clips on every metric
    for values in (rma, rra, auroc, auprc, iou.mean(0)):
        assert values[:2].min() > values[2:].max()


def test_ties_are_broken_uniformly_in_expectation():
    g = torch.Generator().manual_seed(5)
    a = torch.randint(0, 3, (3, 6, 10), generator=g).double()  # heavy ties
    m = torch.rand(3, 6, 10, generator=g) < 0.3
    rra, pg, topk = relevance_rank_accuracy(a, m), pointing_game(a, m), top_k_intersection(a, m, k=7)
    auroc, auprc = pixel_auroc(a, m), pixel_auprc(a, m)
    for i in range(3):
        af, mf = a[i].flatten().numpy(), m[i].flatten().numpy()
        k = int(mf.sum())
        assert rra[i].item() == pytest.approx(np_rank_hits_random_ties(af, mf, k) / k, abs=0.02)
        assert pg[i].item() == pytest.approx(np_rank_hits_random_ties(af, mf, 1), abs=0.03)
        assert topk[i].item() == pytest.approx(np_rank_hits_random_ties(af, mf, 7) / 7, abs=0.02)
        assert auroc[i].item() == pytest.approx(roc_auc_score(mf, af))
        assert auprc[i].item() == pytest.approx(average_precision_score(mf, af))


def test_flat_and_all_zero_maps_score_chance():
    m = torch.zeros(1, 5, 8, dtype=torch.bool)
    m[0, 1:3, 2:6] = True  # 8 of 40 bins: chance 0.2
    for a in (torch.zeros(1, 5, 8), torch.full((1, 5, 8), 3.0)):
        assert relevance_mass_accuracy(a, m).item() == pytest.approx(0.2)
        assert relevance_rank_accuracy(a, m).item() == pytest.approx(0.2)
        assert pointing_game(a, m).item() == pytest.approx(0.2)
        assert top_k_intersection(a, m, k=5).item() == pytest.approx(0.2)
        assert pixel_auroc(a, m).item() == pytest.approx(0.5)
        assert pixel_auprc(a, m).item() == pytest.approx(average_precision_score(m.flatten(), a.flatten()))
        assert pixel_auprc(a, m).item() == pytest.approx(0.2)
        # the planer rule: every bin is at or above every percentile of a flat map -> the whole grid
        assert torch.allclose(iou_at_percentile(a, m, selection="inclusive"),
                              torch.full((10, 1), 0.2, dtype=torch.float64))
        # area-matched: the percentile's share of bins, drawn uniformly among the ties -> exactly the chance level
        from benchmark.metrics.localisation import iou_chance
        assert torch.allclose(iou_at_percentile(a, m), iou_chance(m))
    # a map with only negative relevance has no positive mass to place: chance
    assert relevance_mass_accuracy(-torch.rand(1, 5, 8) - 0.1, m).item() == pytest.approx(0.2)


def test_degenerate_truths():
    a = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(7))
    empty = torch.zeros(2, 4, 6, dtype=torch.bool)
    full = torch.ones(2, 4, 6, dtype=torch.bool)
    for fn in (relevance_mass_accuracy, relevance_rank_accuracy, pointing_game, pixel_auprc):
        assert torch.equal(fn(a, empty), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(top_k_intersection(a, empty, k=3), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(iou_at_percentile(a, empty), torch.zeros(10, 2, dtype=torch.float64))
    assert torch.equal(pixel_auroc(a, empty), torch.full((2,), 0.5, dtype=torch.float64))
    assert torch.equal(pixel_auroc(a, full), torch.full((2,), 0.5, dtype=torch.float64))
    for fn in (relevance_rank_accuracy, pointing_game, pixel_auprc):
        assert torch.allclose(fn(a, full), torch.ones(2, dtype=torch.float64))
    # top-k larger than the grid is capped at the grid
    assert torch.allclose(top_k_intersection(a, full, k=1000), torch.ones(2, dtype=torch.float64))


def test_time_only_form_uses_the_frequency_summed_curve():
    from benchmark.metrics import frame_curve
    g = torch.Generator().manual_seed(9)
    a = torch.randn(2, 5, 40, generator=g)
    labels = torch.zeros(2, 40, dtype=torch.bool)
    labels[:, 10:18] = True
    curve = frame_curve(a)
    assert torch.allclose(curve, a.double().sum(1))
    got = pixel_auroc(curve, labels)
    for i in range(2):
        assert got[i].item() == pytest.approx(roc_auc_score(labels[i].numpy(), a[i].double().sum(0).numpy()))


def test_iou_chance_is_the_mean_iou_of_maps_that_ignore_the_truth():
    from benchmark.metrics.localisation import iou_at_percentile, iou_chance
    g = torch.Generator().manual_seed(11)
    truth = torch.zeros(2, 20, 50, dtype=torch.bool)
    truth[0, 3:9, 10:30] = True   # 12 % of the bins
    truth[1, :, 40:50] = True     # 20 %
    percentiles = [90, 95, 99]
    draws = torch.rand(400, 2, 20, 50, generator=g)
    simulated = torch.stack([iou_at_percentile(d, truth, percentiles) for d in draws]).mean(0)
    want = iou_chance(truth, percentiles)
    assert want.shape == (3, 2)
    assert torch.allclose(want, simulated, atol=0.004)
    # a map that ignores the truth scores far below the area fraction the chance column used to hold
    assert (want[:, 0] < 0.12).all() and want[0, 0] == pytest.approx(0.12 * 100 / (100 + 120 - 12), abs=2e-3)
