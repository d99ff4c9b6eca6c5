"""L-MAC family (AI, AD, AG, FF, Fid-In), SPS and COMP against numpy re-implementations of the
SpeechBrain recipe formulas."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from benchmark.metrics import (
    ad,
    ag,
    ai,
    class_probabilities,
    complexity,
    explanation_mask,
    ff_out,
    fid_in,
    masked_in_out,
    sparseness,
)

EPS = 1e-10


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_lmac(px: np.ndarray, pin: np.ndarray, pout: np.ndarray, compat: bool = False) -> dict[str, np.ndarray]:
    """The recipe's per-sample formulas, explained class = argmax of the input's probabilities."""
    out = {k: [] for k in ("ai", "ad", "ag", "ff", "fid")}
    sx, sin = (np_softmax(px), np_softmax(pin)) if compat else (px, pin)
    for i in range(len(px)):
        c = int(np.argmax(px[i]))
        p, o, q = px[i, c], pin[i, c], pout[i, c]
        out["ai"].append(100.0 * (p < o))
        out["ad"].append(100.0 * max(0.0, sx[i, c] - sin[i, c]) / (sx[i, c] + EPS))
        out["ag"].append(100.0 * max(0.0, o - p) / (1 - p + EPS))
        out["ff"].append(p - q)
        out["fid"].append(float(np.argmax(pin[i]) == c))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("n_classes", [2, 5])
def test_lmac_formulas_match_the_recipe(n_classes):
    g = torch.Generator().manual_seed(n_classes)
    probs = [torch.randn(16, n_classes, generator=g, dtype=torch.float64).mul(2).softmax(1) for _ in range(3)]
    px, pin, pout = probs
    target = px.argmax(1)
    want = np_lmac(px.numpy(), pin.numpy(), pout.numpy())
    assert torch.allclose(ai(px, pin, target), torch.from_numpy(want["ai"]))
    assert torch.allclose(ad(px, pin, target), torch.from_numpy(want["ad"]))
    assert torch.allclose(ag(px, pin, target), torch.from_numpy(want["ag"]))
    assert torch.allclose(ff_out(px, pout, target), torch.from_numpy(want["ff"]))
    assert torch.allclose(fid_in(pin, target), torch.from_numpy(want["fid"]))
    compat = np_lmac(px.numpy(), pin.numpy(), pout.numpy(), compat=True)
    assert torch.allclose(ad(px, pin, target, compat=True), torch.from_numpy(compat["ad"]))
    # the second softmax compresses the drop: compat AD is never larger than the single-softmax AD
    assert (ad(px, pin, target, compat=True) <= ad(px, pin, target) + 1e-9).all()
    assert ai(px, pin, target).unique().tolist() in ([0.0, 100.0], [0.0], [100.0])


def test_lmac_hand_values_and_edges():
    px = class_probabilities(torch.tensor([0.8, 0.8, 1.0, 0.3], dtype=torch.float64))
    pin = class_probabilities(torch.tensor([0.9, 0.4, 1.0, 0.3], dtype=torch.float64))
    anomalous = torch.ones(4, dtype=torch.long)
    assert ai(px, pin, anomalous).tolist() == [100.0, 0.0, 0.0, 0.0]
    assert ad(px, pin, anomalous).tolist() == pytest.approx([0.0, 50.0, 0.0, 0.0])
    # AG: (0.9 - 0.8) / 0.2 = 50 %; p = 1 leaves nothing to gain (0, not a division by zero)
    assert ag(px, pin, anomalous).tolist() == pytest.approx([50.0, 0.0, 0.0, 0.0])
    assert fid_in(pin, anomalous).tolist() == [1.0, 0.0, 1.0, 0.0]
    # predicted mode on the last clip explains "normal" (p = 0.3): its probability 0.7 is unchanged
    predicted = px.argmax(1)
    assert predicted.tolist() == [1, 1, 1, 0]
    assert fid_in(pin, predicted).tolist() == [1.0, 0.0, 1.0, 1.0]


def test_explanation_mask_keeps_the_stated_fraction_even_for_flat_maps():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 8, 10, generator=g)
    m = explanation_mask(a, 0.2)
    assert torch.equal(m.sum((1, 2)), torch.full((3,), 16.0))
    for i in range(3):
        threshold = np.sort(a[i].flatten().numpy())[-16]
        assert torch.equal(m[i].bool(), a[i] >= threshold)
    assert explanation_mask(torch.zeros(2, 8, 10), 0.2).sum((1, 2)).tolist() == [16.0, 16.0]


def test_masked_in_and_out_take_removed_bins_from_the_reference():
    x = torch.full((1, 1, 2, 3), 5.0)
    reference = torch.full_like(x, -1.0)
    mask = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])
    kept, removed = masked_in_out(x, reference, mask)
    assert kept[0, 0].tolist() == [[5.0, -1.0, 2.0], [-1.0, 5.0, -1.0]]
    assert removed[0, 0].tolist() == [[-1.0, 5.0, 2.0], [5.0, -1.0, 5.0]]


def np_gini(a: np.ndarray) -> float:
    a = np.abs(a).flatten()
    a = a / (a.max() if a.max() > 0 else 1.0) + 1e-7
    a = np.sort(a)
    n = a.size
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * np.sum(a)))


def test_sparseness_and_complexity_match_references():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(4, 6, 9, generator=g, dtype=torch.float64) ** 3
    sps, comp = sparseness(a), complexity(a)
    for i in range(4):
        assert sps[i].item() == pytest.approx(np_gini(a[i].numpy()), abs=1e-12)
        w = np.abs(a[i].numpy().flatten())
        assert comp[i].item() == pytest.approx(scipy.stats.entropy(w / w.sum()), abs=1e-12)
    # extremes: one bin -> Gini near 1, entropy 0; flat or all-zero -> Gini 0, entropy log(n)
    one = torch.zeros(2, 6, 9, dtype=torch.float64)
    one[:, 2, 3] = 4.0
    assert sparseness(one).tolist() == pytest.approx([np_gini(one[0].numpy())] * 2)
    assert sparseness(one)[0].item() > 0.98
    assert complexity(one).tolist() == pytest.approx([0.0, 0.0])
    for flat in (torch.zeros(2, 6, 9), torch.full((2, 6, 9), -3.0)):
        assert sparseness(flat).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
        assert complexity(flat).tolist() == pytest.approx([np.log(54)] * 2)
