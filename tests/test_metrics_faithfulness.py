"""Planer faithfulness (ff, ff_norm, ff_segment) against slow numpy loops written from the formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.metrics import ff, ff_norm, ff_segment
from benchmark.metrics.faithfulness import segment_frames

PERCENTILES = tuple(range(90, 100))


def template_score(template: torch.Tensor, weight: torch.Tensor):
    """Weighted mean squared deviation from a fixed template: `[B, 1, F, T] -> [B]`."""
    def score(x: torch.Tensor) -> torch.Tensor:
        return (((x - template) ** 2) * weight).sum(dim=(1, 2, 3)) / weight.sum()
    return score


def np_score(x: np.ndarray, template: np.ndarray, weight: np.ndarray) -> float:
    return float((((x - template) ** 2) * weight).sum() / weight.sum())


def np_frames(curve: np.ndarray, p: int) -> np.ndarray:
    return curve >= np.quantile(curve, p / 100)


def np_ff(x, template, weight, attribution, p, frames_of=None, normal_median=None):
    """One clip: x `[1, F, T]`, attribution `[F, T]`."""
    curve = attribution.sum(axis=0)
    frames = np_frames(curve, p) if frames_of is None else frames_of(curve, p)
    x2 = x.copy()
    x2[:, :, frames] = template[:, :, frames]
    s1, s2 = np_score(x, template, weight), np_score(x2, template, weight)
    if normal_median is None:
        return max(0.0, 1 - s2 / s1) if s1 > 0 else 0.0
    excess = s1 - normal_median
    return min(1.0, max(0.0, (s1 - s2) / excess)) if excess > 0 else 0.0


@pytest.fixture
def toy():
    g = torch.Generator().manual_seed(0)
    b, f, t = 3, 6, 45
    template = torch.randn(1, 1, f, t, generator=g, dtype=torch.float64)
    weight = torch.rand(1, 1, f, t, generator=g, dtype=torch.float64) + 0.5
    x = template + torch.randn(b, 1, f, t, generator=g, dtype=torch.float64) * 0.3
    x[:, :, :, 10:14] += 2.0  # a loud anomaly on frames 10-13
    attribution = torch.randn(b, f, t, generator=g, dtype=torch.float64)
    return template, weight, x, attribution


def test_ff_matches_numpy_on_random_maps(toy):
    template, weight, x, attribution = toy
    score = template_score(template, weight)
    got = ff(score, x, template.expand_as(x), attribution)
    assert got.shape == (len(PERCENTILES), 3)
    for i, p in enumerate(PERCENTILES):
        for b in range(3):
            want = np_ff(x[b].numpy(), template[0].numpy(), weight[0].numpy(), attribution[b].numpy(), p)
            assert got[i, b].item() == pytest.approx(want, abs=1e-12)


def test_ff_hand_values():
    f, t = 4, 20
    template = torch.zeros(1, 1, f, t, dtype=torch.float64)
    weight = torch.ones_like(template)
    x = template.clone()
    x[..., 3:6] = 1.0  # score = 3 frames of 20 deviate by 1 = 3/20
    score = template_score(template, weight)
    on_anomaly = torch.zeros(1, f, t, dtype=torch.float64)
    on_anomaly[..., 3:6] = 1.0
    elsewhere = torch.zeros(1, f, t, dtype=torch.float64)
    elsewhere[..., 12:15] = 1.0
    one_frame = torch.zeros(1, f, t, dtype=torch.float64)
    one_frame[..., 4] = 1.0
    ref = template.expand_as(x)
    # planer rule, p = 90: quantile position 0.9 * 19 = 17.1 lies between two of the three tied peak values ->
    # all three frames
    assert ff(score, x, ref, on_anomaly, percentiles=[90], selection="inclusive").item() == pytest.approx(1.0)
    assert ff(score, x, ref, elsewhere, percentiles=[90], selection="inclusive").item() == pytest.approx(0.0)
    # area-matched: share_count(20, 90) = 20 - ceil(17.1) = 2 frames, two of the three tied peaks
    assert ff(score, x, ref, on_anomaly, percentiles=[90]).item() == pytest.approx(2 / 3)
    assert ff(score, x, ref, elsewhere, percentiles=[90]).item() == pytest.approx(0.0)
    # one peak frame: p = 95 -> position 18.05 between 0 and 1 -> only frame 4 -> one third of the score goes
    for selection in ("inclusive", "area"):
        assert ff(score, x, ref, one_frame, percentiles=[95], selection=selection).item() == pytest.approx(1 / 3)


def test_ff_flat_map_under_the_planer_rule_selects_every_frame_and_ties_are_included():
    f, t = 3, 10
    template = torch.zeros(1, 1, f, t, dtype=torch.float64)
    weight = torch.ones_like(template)
    x = torch.ones(1, 1, f, t, dtype=torch.float64)
    reference = torch.full_like(x, 0.5)  # s(x) = 1, s(reference) = 0.25
    score = template_score(template, weight)
    for attribution in (torch.zeros(1, f, t, dtype=torch.float64), torch.full((1, f, t), 7.0, dtype=torch.float64)):
        got = ff(score, x, reference, attribution, selection="inclusive")
        assert torch.allclose(got, torch.full_like(got, 0.75))
    # ties exactly at the threshold: frames 0-4 share the top value -> all five replaced at every p >= 50
    tied = torch.zeros(1, f, t, dtype=torch.float64)
    tied[..., :5] = 1.0
    got = ff(score, x, reference, tied, percentiles=[50, 90, 99], selection="inclusive")
    assert torch.allclose(got, torch.full_like(got, 0.5 * 0.75))


def test_ff_area_matched_replaces_the_share_the_percentile_names_whatever_the_ties():
    """A flat, a blocky and a continuous map replace the same number of frames at every p, so FF cannot grow
    with a coarse explainer's tied area (SLIME, occlusion): each replaced frame here removes 0.075 of s(x)."""
    from benchmark.metrics._ranking import share_count
    f, t = 3, 40
    template = torch.zeros(1, 1, f, t, dtype=torch.float64)
    x = torch.ones(1, 1, f, t, dtype=torch.float64)
    reference = torch.full_like(x, 0.5)
    score = template_score(template, torch.ones_like(template))
    percentiles = [50, 75, 90, 95, 99]
    flat = torch.zeros(1, f, t, dtype=torch.float64)
    blocky = torch.arange(t, dtype=torch.float64).div(10, rounding_mode="floor").expand(1, f, t).clone()
    smooth = torch.linspace(0, 1, t, dtype=torch.float64).expand(1, f, t).clone()
    want = torch.tensor([0.75 * share_count(t, p) / t for p in percentiles], dtype=torch.float64)
    for attribution in (flat, blocky, smooth):
        got = ff(score, x, reference, attribution, percentiles=percentiles)[:, 0]
        assert torch.allclose(got, want)
    # today's rule gives the blocky map a whole 10-frame block at p = 90 where the smooth map gets 4 frames
    inclusive = ff(score, x, reference, blocky, percentiles=[90], selection="inclusive").item()
    assert inclusive == pytest.approx(0.75 * 10 / t) and share_count(t, 90) == 4


def test_ff_is_zero_when_replacement_raises_the_score():
    template = torch.zeros(1, 1, 2, 10, dtype=torch.float64)
    x = torch.full_like(template, 0.1)
    reference = torch.full_like(template, 5.0)  # a bad reference makes things worse: FF clips at 0
    got = ff(template_score(template, torch.ones_like(template)), x, reference, torch.rand(1, 2, 10))
    assert torch.equal(got, torch.zeros_like(got))


def test_ff_refuses_negative_scores():
    x = torch.zeros(1, 1, 2, 10)
    with pytest.raises(ValueError, match="non-negative"):
        ff(lambda v: -torch.ones(len(v)), x, x, torch.rand(1, 2, 10))


def test_ff_norm_matches_numpy(toy):
    template, weight, x, attribution = toy
    score = template_score(template, weight)
    with torch.no_grad():
        s = score(x)
    median = float(s[1]) - 0.5  # clip 1 has a small excess (values clip at 1), clip 0/2 vary
    got = ff_norm(score, x, template.expand_as(x), attribution, median)
    for i, p in enumerate(PERCENTILES):
        for b in range(3):
            want = np_ff(x[b].numpy(), template[0].numpy(), weight[0].numpy(), attribution[b].numpy(), p,
                         normal_median=median)
            assert got[i, b].item() == pytest.approx(want, abs=1e-12)
    # a clip not above the median normal score has no excess: 0
    high = ff_norm(score, x, template.expand_as(x), attribution, float(s.max()) + 1.0)
    assert torch.equal(high, torch.zeros_like(high))


def np_segment_frames(curve, p, labels, chunk):
    peaks = np_frames(curve, p)
    out = np.zeros_like(peaks)
    for c in range(len(curve) // chunk):
        if peaks[c * chunk:(c + 1) * chunk].any():
            out[c * chunk:(c + 1) * chunk] = True
    return out & labels


def test_ff_segment_matches_numpy(toy):
    template, weight, x, attribution = toy
    labels = torch.zeros(3, x.shape[-1], dtype=torch.bool)
    labels[0, 5:20] = True
    labels[1, 30:45] = True  # includes trailing frames 40-44, which belong to no whole chunk
    labels[2, :] = True
    score = template_score(template, weight)
    got = ff_segment(score, x, template.expand_as(x), attribution, labels, chunk_frames=10)
    for i, p in enumerate(PERCENTILES):
        for b in range(3):
            frames_of = lambda curve, q, b=b: np_segment_frames(curve, q, labels[b].numpy(), 10)  # noqa: E731
            want = np_ff(x[b].numpy(), template[0].numpy(), weight[0].numpy(), attribution[b].numpy(), p,
                         frames_of=frames_of)
            assert got[i, b].item() == pytest.approx(want, abs=1e-12)


def test_segment_frames_hand_built():
    peaks = torch.zeros(1, 1, 12, dtype=torch.bool)
    peaks[..., 1] = True    # chunk 0 (frames 0-3)
    peaks[..., 11] = True   # frames 8-11 = chunk 2
    labels = torch.zeros(1, 12, dtype=torch.bool)
    labels[0, 2:10] = True
    got = segment_frames(peaks, labels, chunk_frames=4)[0, 0]
    want = torch.zeros(12, dtype=torch.bool)
    want[2:4] = True   # chunk 0 restricted to labels
    want[8:10] = True  # chunk 2 restricted to labels; chunk 1 has no peak
    assert torch.equal(got, want)


# --- deletion / insertion -----------------------------------------------------------------------


def np_curves(x, reference, template, weight, attribution, n_steps):
    """One clip: replace (deletion) or restore (insertion) the top round(k/n * N) bins, k = 0..n."""
    order = np.argsort(-attribution.flatten(), kind="stable")
    s1 = np_score(x, template, weight)
    deletion, insertion = [], []
    for k in range(n_steps + 1):
        top = order[: int(round(k / n_steps * order.size))]
        deleted, inserted = x.copy().reshape(-1), reference.copy().reshape(-1)
        deleted[top] = reference.reshape(-1)[top]
        inserted[top] = x.reshape(-1)[top]
        deletion.append(np_score(deleted.reshape(x.shape), template, weight) / s1)
        insertion.append(np_score(inserted.reshape(x.shape), template, weight) / s1)
    return np.array(deletion), np.array(insertion)


def test_deletion_and_insertion_match_numpy(toy):
    from benchmark.metrics import deletion_auc, insertion_auc, perturbation_curves
    template, weight, x, attribution = toy
    reference = torch.zeros_like(x) + template * 0.5  # a reference that is not the template itself
    score = template_score(template, weight)
    deletion, insertion = perturbation_curves(score, x, reference, attribution, n_steps=7)
    assert deletion.shape == insertion.shape == (8, 3)
    for b in range(3):
        d, i = np_curves(x[b].numpy(), reference[b].numpy(), template[0].numpy(), weight[0].numpy(),
                         attribution[b].numpy(), 7)
        assert np.allclose(deletion[:, b].numpy(), d) and np.allclose(insertion[:, b].numpy(), i)
        assert deletion_auc(score, x, reference, attribution, n_steps=7)[b].item() == pytest.approx(
            np.trapezoid(d, dx=1 / 7))
        assert insertion_auc(score, x, reference, attribution, n_steps=7)[b].item() == pytest.approx(
            np.trapezoid(i, dx=1 / 7))


def test_deletion_orders_a_faithful_map_before_its_opposite(toy):
    from benchmark.metrics import deletion_auc, insertion_auc
    template, weight, x, _ = toy
    score = template_score(template, weight)
    reference = template.expand_as(x)
    error = ((x - template) ** 2 * weight)[:, 0]  # exactly each bin's share of the score
    assert (deletion_auc(score, x, reference, error) < deletion_auc(score, x, reference, -error)).all()
    assert (insertion_auc(score, x, reference, error) > insertion_auc(score, x, reference, -error)).all()
    # with reference = template the score is additive over bins: deletion along the exact shares is the
    # steepest possible descent, so no other ordering beats it
    noise = torch.randn(x.shape[0], *x.shape[2:], generator=torch.Generator().manual_seed(8), dtype=x.dtype)
    assert (deletion_auc(score, x, reference, error) <= deletion_auc(score, x, reference, noise)).all()


def test_coinciding_selections_are_scored_once_with_the_same_values():
    """Percentiles whose frame selections coincide share one detector pass per clip; an empty selection is
    s(x) itself; the values equal scoring every perturbed copy."""
    from benchmark.metrics._passes import score_stacked
    from benchmark.metrics.faithfulness import distinct_frame_scores, replace_frames
    g = torch.Generator().manual_seed(0)
    x, reference = torch.randn(3, 1, 4, 12, generator=g), torch.randn(3, 1, 4, 12, generator=g)
    a, b = torch.rand(3, 12, generator=g) > 0.5, torch.rand(3, 12, generator=g) > 0.5
    empty = torch.zeros(3, 12, dtype=torch.bool)
    frames = torch.stack([a, a, b, a, empty])                         # K = 5: 2 distinct non-empty per clip
    frames[2, 1] = a[1]                                              # clip 1: b coincides with a too
    seen = []

    def score(v):
        seen.append(len(v))
        return v.pow(2).mean(dim=(1, 2, 3))

    want = score_stacked(score, replace_frames(x, reference, frames))
    seen.clear()
    s_x = score(x)
    seen.clear()
    got, passes = distinct_frame_scores(score, x, reference, frames, s_x)
    torch.testing.assert_close(got, want.float())
    assert sum(seen) == 2 + 1 + 2 and passes == pytest.approx(5 / 3)
    torch.testing.assert_close(got[4], s_x)
    _, passes_no_scores = distinct_frame_scores(score, x, reference, frames)
    assert passes_no_scores == pytest.approx(8 / 3)                  # the empty selection scored too
