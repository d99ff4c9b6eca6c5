"""Chunk F1 (planer protocol) and event F1 (sed_eval definitions) against slow references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from benchmark.metrics import chunk_f1, event_f1, peak_frames
from benchmark.metrics.temporal import event_f1_from_frames

PERCENTILES = tuple(range(90, 100))


def np_prf(tp: int, n_est: int, n_ref: int) -> float:
    p = tp / n_est if n_est else 0.0
    r = tp / n_ref if n_ref else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def np_chunk_f1(attribution: np.ndarray, labels: np.ndarray, p: int, chunk: int) -> float:
    """The planer reference, one clip: curve -> peaks -> chunk TP/FP/FN -> F1."""
    curve = attribution.sum(axis=0)
    peaks = curve >= np.quantile(curve, p / 100)
    tp = fp = fn = 0
    for c in range(len(curve) // chunk):
        has_peak = peaks[c * chunk:(c + 1) * chunk].any()
        positive = labels[c * chunk:(c + 1) * chunk].any()
        tp += has_peak and positive
        fp += has_peak and not positive
        fn += positive and not has_peak
    return np_prf(tp, tp + fp, tp + fn)


def random_labels(g: torch.Generator, b: int, t: int) -> torch.Tensor:
    labels = torch.zeros(b, t, dtype=torch.bool)
    for i in range(b):
        for _ in range(1 + i % 3):
            on = int(torch.randint(0, t - 5, (1,), generator=g))
            labels[i, on:on + int(torch.randint(2, 30, (1,), generator=g))] = True
    return labels


def test_chunk_f1_matches_planer_reference_on_random_maps():
    g = torch.Generator().manual_seed(1)
    b, f, t, chunk = 6, 5, 401, 40
    attribution = torch.randn(b, f, t, generator=g)
    attribution[:, :, 100:140] += 1.5  # some clips agree with their labels, others not
    labels = random_labels(g, b, t)
    labels[0, 100:140] = True
    got = chunk_f1(attribution, labels, chunk_frames=chunk)
    assert got.shape == (10, b)
    for i, p in enumerate(PERCENTILES):
        for j in range(b):
            want = np_chunk_f1(attribution[j].double().numpy(), labels[j].numpy(), p, chunk)
            assert got[i, j].item() == pytest.approx(want, abs=1e-12)
    assert got.max() > 0.3 and got.min() < got.max()


def test_chunk_f1_hand_built():
    t, chunk = 401, 40  # 10 chunks, frame 400 ignored
    labels = torch.zeros(1, t, dtype=torch.bool)
    labels[0, 80:160] = True          # chunks 2 and 3 positive
    attribution = torch.zeros(1, 2, t)
    attribution[0, :, 85:90] = 0.5    # chunk 2: TP
    attribution[0, :, 300:305] = 0.5  # chunk 7: FP (chunk 3 is then a FN)
    attribution[0, :, 400] = 2.5      # the trailing frame: a peak that falls in no chunk
    # p = 99: position 0.99 * 400 = 396 falls on the ten 1.0-frames -> exactly the eleven spike frames
    got = chunk_f1(attribution, labels, chunk_frames=chunk, percentiles=[99], selection="inclusive")
    assert got.item() == pytest.approx(0.5)  # P = 1/2, R = 1/2
    # the planer rule at p = 90: position 360 falls on the zero background -> every chunk predicted: P 2/10, R 1
    got = chunk_f1(attribution, labels, chunk_frames=chunk, percentiles=[90], selection="inclusive")
    assert got.item() == pytest.approx(2 * 0.2 / 1.2)
    # area-matched at p = 99: share_count(401, 99) = 5 frames, the spike frame and 4 of the ten 1.0-frames
    # drawn at random, so the 1-s chunks they hit vary, but at most 2 chunks are predicted (P >= 1/2 ... )
    got = chunk_f1(attribution, labels, chunk_frames=chunk, percentiles=[99, 90])
    assert got[0].item() in (pytest.approx(0.5), pytest.approx(2 / 3), 0.0)
    # ... and at p = 90 the 41 frames are the 11 peaks and 30 of the 390 tied zeros, not all of them
    assert got[1].item() > 2 * 0.2 / 1.2


def test_chunk_f1_edge_cases():
    t, chunk = 80, 40
    attribution = torch.rand(2, 3, t)
    no_labels = torch.zeros(2, t, dtype=torch.bool)
    assert torch.equal(chunk_f1(attribution, no_labels, chunk_frames=chunk), torch.zeros(10, 2, dtype=torch.float64))
    # flat map under the planer rule: every chunk predicted; labels in one of two chunks -> P 0.5, R 1
    labels = torch.zeros(2, t, dtype=torch.bool)
    labels[:, 0:3] = True
    flat = chunk_f1(torch.zeros(2, 3, t), labels, chunk_frames=chunk, selection="inclusive")
    assert torch.allclose(flat, torch.full_like(flat, 2 * 0.5 / 1.5))


def test_peak_frames_follow_numpy_quantile_with_ties():
    curve_values = np.array([0, 1, 1, 1, 2, 2, 3, 3, 3, 3], dtype=np.float64)
    attribution = torch.from_numpy(curve_values).reshape(1, 1, -1)
    for p in (10, 50, 90, 95, 99):
        got = peak_frames(attribution, [p], selection="inclusive")[0, 0].numpy()
        assert np.array_equal(got, curve_values >= np.quantile(curve_values, p / 100))


# --- event F1 -----------------------------------------------------------------------------------


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    events, start = [], None
    for i, a in enumerate(list(active) + [False]):
        if a and start is None:
            start = i
        if not a and start is not None:
            events.append((start, i))
            start = None
    return events


def sed_eval_f1(estimated: np.ndarray, reference: np.ndarray, fps: float, collar: float = 0.2,
                fraction: float = 0.5) -> float:
    """sed_eval's event-based F1 for one class and one file, written from its definitions (seconds)."""
    est = [(a / fps, b / fps) for a, b in runs(estimated)]
    ref = [(a / fps, b / fps) for a, b in runs(reference)]
    hit = np.zeros((len(ref), len(est)))
    for j, (r_on, r_off) in enumerate(ref):
        for i, (e_on, e_off) in enumerate(est):
            onset_ok = abs(r_on - e_on) <= collar + 1e-12
            offset_ok = abs(r_off - e_off) <= max(collar, fraction * (r_off - r_on)) + 1e-12
            hit[j, i] = onset_ok and offset_ok
    tp = int(hit[linear_sum_assignment(-hit)].sum()) if len(ref) and len(est) else 0
    return np_prf(tp, len(est), len(ref))


def test_event_f1_matches_sed_eval_definitions():
    g = torch.Generator().manual_seed(3)
    b, f, t, fps = 5, 4, 200, 20.0
    attribution = torch.randn(b, f, t, generator=g)
    labels = random_labels(g, b, t)
    # make some estimated runs line up with the references so hits exist
    attribution[:, :, :] += labels[:, None, :].float() * 2.5
    got = event_f1(attribution, labels, frames_per_second=fps)
    peaks = peak_frames(attribution, PERCENTILES)
    assert got.shape == (10, b)
    for i in range(10):
        for j in range(b):
            want = sed_eval_f1(peaks[i, j].numpy(), labels[j].numpy(), fps)
            assert got[i, j].item() == pytest.approx(want, abs=1e-12)
    assert got.max() > 0


def test_event_f1_collars_and_one_to_one_matching():
    fps = 10.0  # collar 0.2 s = 2 frames
    t = 100
    reference = torch.zeros(1, t, dtype=torch.bool)
    reference[0, 20:40] = True   # 2 s: offset tolerance max(0.2, 1.0) = 10 frames
    estimated = torch.zeros(1, 1, t, dtype=torch.bool)
    estimated[0, 0, 22:48] = True  # onset +2 frames (on the collar), offset +8 frames: a hit
    assert event_f1_from_frames(estimated, reference, frames_per_second=fps).item() == pytest.approx(1.0)
    estimated[0, 0, 22] = False    # onset +3 frames: outside the collar
    assert event_f1_from_frames(estimated, reference, frames_per_second=fps).item() == 0.0
    # one estimated event that hits two reference events counts once (R 1/2), and a second estimated
    # event that can only take the second reference makes the optimal matching pair both (F1 = 1)
    reference = torch.zeros(1, t, dtype=torch.bool)
    reference[0, 10:11] = True
    reference[0, 12:14] = True
    estimated = torch.zeros(1, 1, t, dtype=torch.bool)
    estimated[0, 0, 10:12] = True  # onset within 2 frames of both, offset within 2 frames of both
    assert event_f1_from_frames(estimated, reference, frames_per_second=fps).item() == pytest.approx(np_prf(1, 1, 2))
    estimated[0, 0, 13:14] = True  # hits only the second reference
    assert event_f1_from_frames(estimated, reference, frames_per_second=fps).item() == pytest.approx(1.0)


def test_gap_closing_matches_scipy_and_joins_fragmented_peaks():
    from scipy.ndimage import binary_closing

    from benchmark.metrics.temporal import close_gaps, gap_window
    g = torch.Generator().manual_seed(5)
    active = torch.rand(3, 4, 60, generator=g) > 0.6
    got = close_gaps(active, 5)
    # scipy's closing treats the outside as inactive, which erodes runs at the edges: pad with the edge
    # values to compare away from that convention
    for row, mine in zip(active.reshape(-1, 60).numpy(), got.reshape(-1, 60).numpy(), strict=True):
        padded = np.pad(row, 5, mode="edge")
        assert np.array_equal(mine, binary_closing(padded, np.ones(5, bool))[5:-5])
    assert close_gaps(active, 1) is active and not close_gaps(torch.zeros(2, 9, dtype=torch.bool), 5).any()
    assert gap_window(0.5, 40.0) == 21 and gap_window(0.5, 31.25) == 17 and gap_window(0.0, 40.0) == 1
    with pytest.raises(ValueError, match="odd"):
        close_gaps(active, 4)
    # a map that peaks on every other frame of a 2-s event: no raw run meets the collar, the joined one does
    fps, t = 20.0, 200
    labels = torch.zeros(1, t, dtype=torch.bool)
    labels[0, 60:100] = True
    attribution = torch.zeros(1, 3, t)
    attribution[0, :, 60:100:2] = 1.0
    attribution[0, :, 99] = 1.0
    raw = event_f1(attribution, labels, frames_per_second=fps, percentiles=[90])
    joined = event_f1(attribution, labels, frames_per_second=fps, percentiles=[90], min_gap_s=0.5)
    assert raw.item() == 0.0 and joined.item() == pytest.approx(1.0)


def test_random_map_chance_of_chunk_f1():
    from benchmark.metrics.temporal import random_map_chance
    labels = torch.zeros(2, 400, dtype=torch.bool)
    labels[0, 40:120] = True    # 2 of 10 one-second chunks
    labels[1, 0:200] = True     # 5 of 10
    score = lambda a, lab: chunk_f1(a, lab, chunk_frames=40, percentiles=[90, 99])  # noqa: E731
    chance = random_map_chance(score, labels, [90, 99])
    assert chance.shape == (2, 2)
    # at p = 90, 40 random peak frames reach nearly every chunk: recall 1, precision = share of positive chunks
    for clip, share in ((0, 0.2), (1, 0.5)):
        assert chance[0, clip].item() == pytest.approx(2 * share / (1 + share), abs=0.03)
    # at p = 99, 4 peaks: fewer chunks predicted, the same expected precision, a lower recall
    assert (chance[1] < chance[0]).all()
    # the level depends on the labels alone, not on any shared random state
    torch.manual_seed(123)
    assert torch.equal(random_map_chance(score, labels, [90, 99]), chance)


def test_area_matched_peaks_select_the_same_count_for_blocky_and_continuous_maps():
    """A SLIME-like 6-segment map selected its whole top segment (66 of 401 frames) at every p under the
    inclusive rule; area-matched, every map selects share_count(401, p) frames (41 ... 5)."""
    from benchmark.metrics._ranking import share_count
    t = 401
    percentiles = list(range(90, 100))
    blocky = torch.arange(t).div(67, rounding_mode="floor").double().reshape(1, 1, t)  # 6 flat segments
    windows = torch.arange(t).div(16, rounding_mode="floor").remainder(5).double().reshape(1, 1, t)
    smooth = torch.randn(1, 1, t, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = torch.tensor([share_count(t, p) for p in percentiles])
    assert want[0] == 41 and want[-1] == 5
    for attribution in (blocky, windows, smooth, torch.zeros(1, 1, t, dtype=torch.float64)):
        assert torch.equal(peak_frames(attribution, percentiles).sum(-1)[:, 0], want)
    assert (peak_frames(blocky, percentiles, selection="inclusive").sum(-1) == 66).all()  # the top segment
    assert torch.equal(peak_frames(smooth, percentiles, selection="inclusive"), peak_frames(smooth, percentiles))
    with pytest.raises(ValueError, match="selection 'loose'"):
        peak_frames(smooth, [90], selection="loose")


def test_a_constant_map_scores_the_random_map_chance_of_chunk_f1():
    from benchmark.metrics.temporal import random_map_chance
    g = torch.Generator().manual_seed(5)
    n, t, chunk = 400, 401, 40
    labels = torch.zeros(n, t, dtype=torch.bool)
    onsets = torch.randint(0, t - 120, (n,), generator=g)
    for i, onset in enumerate(onsets.tolist()):
        labels[i, onset:onset + 120] = True

    def score(attribution, frame_labels):
        return chunk_f1(attribution, frame_labels, chunk_frames=chunk, percentiles=[90, 99])
    constant = score(torch.zeros(n, 1, t), labels).mean(dim=1)
    chance = random_map_chance(score, labels, [90, 99]).mean(dim=1)
    assert torch.allclose(constant, chance, atol=0.02)
    # the planer rule predicts every chunk of a constant map: far above the chance at p = 99
    inclusive = chunk_f1(torch.zeros(n, 1, t), labels, chunk_frames=chunk, percentiles=[99],
                         selection="inclusive").mean()
    assert inclusive > chance[1] + 0.1


def test_event_f1_at_the_events_share_finds_a_map_that_covers_the_event():
    """A map peaking over a 4-s event: at p >= 90 a percentile selection keeps at most 41 of 401 frames (1 s),
    which can never meet the event's offset tolerance (F1 0); the events threshold keeps the event's own
    160 frames and finds it (F1 1), while a constant map stays at its random-map chance."""
    from benchmark.metrics.temporal import close_gaps, event_share_frames, gap_window
    fps, t = 40.0, 401
    labels = torch.zeros(2, t, dtype=torch.bool)
    labels[:, 100:260] = True
    attribution = torch.zeros(2, 1, t)
    attribution[:, 0, 100:260] = torch.linspace(1.0, 2.0, 160)
    percentile = event_f1(attribution, labels, frames_per_second=fps, percentiles=[90, 99], min_gap_s=0.5)
    assert torch.equal(percentile, torch.zeros(2, 2, dtype=torch.float64))
    share = event_share_frames(attribution, labels)
    assert share.shape == (1, 2, t) and torch.equal(share[0], labels)
    got = event_f1_from_frames(close_gaps(share, gap_window(0.5, fps)), labels, frames_per_second=fps)
    assert torch.equal(got, torch.ones(1, 2, dtype=torch.float64))
    flat = event_share_frames(torch.zeros(2, 1, t), labels)
    assert flat.sum().item() == 2 * 160 and not torch.equal(flat[0, 0], labels[0])  # a random 160 frames


def test_median_filter_frames_matches_scipy_with_repeated_edges():
    from scipy.ndimage import median_filter

    from benchmark.metrics.temporal import median_filter_frames, median_window
    curve = torch.randn(3, 57, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for window in (1, 3, 7, 21):
        want = median_filter(curve.numpy(), size=(1, window), mode="nearest")
        assert np.allclose(median_filter_frames(curve, window).numpy(), want), window
    assert median_window(0.5, 40.0) == 21 and median_window(0.5, 31.25) == 17 and median_window(0.0, 40.0) == 1
    with pytest.raises(ValueError, match="odd"):
        median_filter_frames(curve, 4)


def test_event_f1_median_filter_drops_a_lone_spike_and_heals_a_dip():
    """A map high over a 4-s event (frames 100-259) with a 3-frame dip inside it and a 3-frame spike at 8 s.
    Unfiltered, the 160 selected frames are the event less its dip plus the spike: the 0.5-s join closes the
    dip, the spike opens a second estimated event, a false positive (F1 2/3 by sed_eval's definitions).
    Median-filtered over 0.5 s (21 frames) the spike and the dip are gone and the selection is the event
    itself (F1 1)."""
    from benchmark.metrics.temporal import close_gaps, event_share_frames, gap_window, median_window
    fps, t = 40.0, 401
    labels = torch.zeros(1, t, dtype=torch.bool)
    labels[:, 100:260] = True
    attribution = torch.zeros(1, 1, t)
    attribution[0, 0, 100:260] = 1.0 + torch.linspace(0.0, 0.1, 160)
    attribution[0, 0, 180:183] = 0.0                    # dip inside the event
    attribution[0, 0, 320:323] = 5.0                    # lone spike far from it

    def f1(median: int) -> float:
        share = event_share_frames(attribution, labels, median)
        return event_f1_from_frames(close_gaps(share, gap_window(0.5, fps)), labels, frames_per_second=fps).item()

    assert f1(1) == pytest.approx(np_prf(1, 2, 1))
    assert f1(median_window(0.5, fps)) == pytest.approx(1.0)
