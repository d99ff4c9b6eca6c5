"""Synthesis metrics: the descending keep selection, agreement/drop against hand-made decisions and against a
slow per-clip reference, decisions at the codec-calibrated threshold (a codec that shifts every score no longer
saturates the sweep), the saturation verdict, SI-SDR against numpy, and the input-space IG baseline on a
closed-form score."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.detector import Detector
from benchmark.features import LogMel, preset
from benchmark.metrics.context import MetricContext
from benchmark.metrics.synthesis import (
    INPUT_IG_STEPS,
    KEEP_PERCENT,
    calibrated_threshold,
    fill_unselected,
    input_ig_attribution,
    keep_mask,
    keep_masks,
    logmel_l1,
    normal_share,
    si_sdr,
    sweep_saturated,
    synthesis_agreement,
    synthesis_drop,
)
from benchmark.registry import registry
from benchmark.types import Batch, Explanation

SPEC = preset("dcase").with_duration(0.5)  # 8000 samples -> 128 x 16
N = SPEC.n_samples


def test_keep_masks_keep_the_largest_attributions() -> None:
    g = torch.Generator().manual_seed(0)
    attribution = torch.rand(3, 4, 10, generator=g)
    planted = [(0, 2, 7), (1, 0, 0), (2, 3, 9)]
    for b, c, t in planted:
        attribution[b, c, t] = 5.0 + b  # the single most important element of each clip
    masks = keep_masks(attribution)
    assert masks.shape == (len(KEEP_PERCENT), 3, 4, 10)
    for k, q in enumerate(KEEP_PERCENT):
        count = int(round(q / 100 * 40))
        for b in range(3):
            flat = attribution[b].flatten().numpy()
            want = np.zeros(40, dtype=bool)
            want[np.argsort(-flat, kind="stable")[:count]] = True
            assert np.array_equal(masks[k, b].flatten().numpy(), want)
    ten = KEEP_PERCENT.index(10)
    for b, c, t in planted:
        assert masks[ten, b, c, t]  # kept by every nonzero fraction: the order is descending
        assert not masks[KEEP_PERCENT.index(0), b, c, t]
    assert masks[KEEP_PERCENT.index(100)].all()


def test_keep_mask_breaks_ties_in_index_order_and_keeps_the_exact_count() -> None:
    flat = torch.zeros(2, 10)
    mask = keep_mask(flat, 0.3)
    assert mask.sum(1).tolist() == [3, 3]
    assert mask[0, :3].all() and not mask[0, 3:].any()


def test_fill_unselected_takes_selected_elements_from_z_and_the_rest_from_the_fill() -> None:
    z, fill = torch.arange(6.0).reshape(1, 2, 3), -torch.ones(1, 2, 3)
    selected = torch.tensor([[[[True, False, False], [False, False, True]]]])
    out = fill_unselected(z, fill, selected)
    assert out.tolist() == [[[[0.0, -1.0, -1.0], [-1.0, -1.0, 5.0]]]]


def test_agreement_and_drop_on_hand_made_decisions() -> None:
    reference = torch.tensor([1, 0, 1])
    kept = torch.tensor([[1, 0, 1], [1, 1, 0]])
    assert synthesis_agreement(kept, reference).tolist() == [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    assert synthesis_drop(kept, reference).tolist() == [[0.0, 0.0, 0.0], [0.0, 1.0, 1.0]]


def test_calibrated_threshold_decides_the_given_share_of_normals_normal() -> None:
    scores = torch.randn(37, generator=torch.Generator().manual_seed(6)) * 3 + 10
    threshold = calibrated_threshold(scores, 0.9)
    assert float(threshold) == pytest.approx(float(np.quantile(scores.double().numpy(), 0.9)))
    det = Detector()
    det.calibrate(scores)  # tau: the 0.9 quantile of the detector's own held-out normal scores
    assert float(threshold) == pytest.approx(float(det.tau))
    assert float((scores >= threshold).double().mean()) == pytest.approx(4 / 37)  # 10 % of 37, ties at the top
    # the share a threshold calls normal, and back: the codec threshold copies the EER decision's operating point
    assert normal_share(scores, threshold) == pytest.approx(33 / 37)
    assert normal_share(scores, calibrated_threshold(scores, normal_share(scores, 11.0))) == \
        pytest.approx(normal_share(scores, 11.0), abs=1 / 37)


def test_sweep_saturated_says_why_only_when_both_ends_agree() -> None:
    flat = {q: 1.0 for q in KEEP_PERCENT}
    reason = sweep_saturated(flat)
    assert reason is not None and "saturated" in reason and "1.00" in reason
    assert sweep_saturated({"100": 0.25, "42": 0.5, "0": 0.25}) is not None  # table labels; the middle is moot
    varied = {**flat, 0: 0.375}
    assert sweep_saturated(varied) is None
    assert sweep_saturated({str(q): v for q, v in varied.items()}) is None
    with pytest.raises(ValueError, match="keep 0 %"):
        sweep_saturated({100: 1.0, 42: 1.0})


def numpy_si_sdr(estimate: np.ndarray, target: np.ndarray) -> float:
    s, e = target - target.mean(), estimate - estimate.mean()
    projection = (e @ s) / (s @ s) * s
    return 10 * math.log10((projection @ projection) / ((e - projection) @ (e - projection)))


def test_si_sdr_matches_numpy_and_ignores_scale() -> None:
    g = torch.Generator().manual_seed(1)
    target, noise = torch.randn(3, 400, generator=g), torch.randn(3, 400, generator=g)
    estimate = 0.5 * target + 0.1 * noise
    got = si_sdr(estimate, target)
    want = [numpy_si_sdr(estimate[i].double().numpy(), target[i].double().numpy()) for i in range(3)]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(si_sdr(3.0 * estimate, target), got, atol=1e-9)
    assert 10 < float(got.mean()) < 20  # 0.5 signal against 0.1 noise is about 14 dB


def test_logmel_l1_is_the_mean_absolute_difference() -> None:
    a, b = torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4)
    b[0, 0, 0, 0], b[1] = 12.0, -2.0
    assert logmel_l1(a, b).tolist() == [1.0, 2.0]


def test_input_ig_of_a_quadratic_score_is_the_squared_signal() -> None:
    """IG of s(w) = sum w^2 from a zero baseline is exactly w^2 (Gauss-Legendre is exact for it)."""
    w = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0], [0.1, 0.2, 0.3]])
    attribution = input_ig_attribution(lambda v: v.pow(2).sum(-1), torch.nn.Identity(), w, n_steps=8,
                                       internal_batch_size=4)
    assert torch.allclose(attribution, w.pow(2), atol=1e-5)


# --- the registered metrics, on a hand-made latent decoder and a loudness detector ---------------------
TONE_HZ = 1000.0
edges = SPEC.mel_band_edges_hz()
TONE_BANDS = (edges[:, 0] < TONE_HZ) & (edges[:, 1] > TONE_HZ)


class Loudness(Detector):
    """Anomalous = a loud 1 kHz tone: the score is the mean log-mel (dB) of the bands holding 1 kHz; the
    threshold is set by each test."""

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, TONE_BANDS].mean(dim=(1, 2))


class ToneDecoder:
    """Latent `[n, 2, L]` -> a 1 kHz tone whose envelope is channel 0 (channel 1 is ignored) times `gain`,
    `[n, N]`."""

    examples_per_forward = 3

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = gain

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        envelope = torch.nn.functional.interpolate(z[:, :1], size=N, mode="linear")[:, 0]
        return self.gain * envelope * torch.sin(2 * math.pi * TONE_HZ * torch.arange(N) / SPEC.sample_rate)


def latent_context(z: torch.Tensor, attribution: torch.Tensor, detector: Detector,
                   fill: torch.Tensor | None = None, decoder: ToneDecoder | None = None) -> MetricContext:
    """The clips are `ToneDecoder().decode(z)`; the codec is `decoder` (by default that same decoder, a
    lossless codec). The codec threshold starts at +inf: each test sets it (`set_codec_threshold`)."""
    decoder = decoder or ToneDecoder()
    clips = ToneDecoder().decode(z)
    fill = torch.zeros_like(z) if fill is None else fill
    logmel = LogMel(SPEC)
    with torch.no_grad():
        x = logmel(clips)
        scores = detector.score(x)
    batch = Batch(ids=[f"c{i}" for i in range(len(z))], x=x, labels=torch.ones(len(z), dtype=torch.long),
                  meta=[{}] * len(z), waveform=clips)
    expl = Explanation(attribution=torch.zeros(len(z), *SPEC.grid),
                       extra={"latent": z, "latent_attribution": attribution, "latent_fill": fill,
                              "codec_reconstruction": decoder.decode(z), "synthesis": decoder,
                              "codec_threshold": torch.full((len(z),), math.inf),
                              "codec_floor_met": torch.ones(len(z))})
    return MetricContext(batch=batch, explanation=expl, detector=detector, spec=SPEC, scores=scores,
                         explain=lambda d, b: expl, generator=torch.Generator().manual_seed(0))


def set_codec_threshold(ctx: MetricContext, threshold: float | torch.Tensor) -> None:
    ctx.explanation.extra["codec_threshold"] = torch.full((len(ctx.batch),), float(threshold))


def metric(name: str, ctx: MetricContext) -> dict[str, list[float]]:
    result = registry("metric").get(name).factory(ctx)
    return {k: v.tolist() for k, v in result.values.items()}


def test_agreement_and_drop_on_a_planted_latent() -> None:
    """Clip 0 is loud through channel 0 only, and its attribution points at channel 0; clip 1 is quiet. The
    fill is the quiet clip's latent. Keeping the top elements keeps clip 0 loud (anomalous); replacing
    them makes it quiet, so its decision flips (drop 1) while the quiet clip's never does."""
    z = torch.zeros(2, 2, 8)
    z[0, 0], z[1, 0] = 1.0, 1e-3
    z[:, 1] = 5.0  # channel 1 never reaches the waveform
    fill = torch.zeros(2, 2, 8)
    fill[:, 0] = 1e-3
    attribution = torch.stack([torch.tensor([[1.0] * 8, [0.0] * 8])] * 2)
    det = Loudness()
    with torch.no_grad():
        loud, quiet = det.score(LogMel(SPEC)(ToneDecoder().decode(z))).tolist()
    ctx = latent_context(z, attribution, det, fill)
    set_codec_threshold(ctx, (loud + quiet) / 2)
    agreement, drop = metric("agreement", ctx), metric("drop", ctx)
    assert agreement["100"] == [1.0, 1.0] and drop["0"] == [0.0, 0.0]
    # 42 % of 16 elements = the first 7 envelope steps of channel 0: kept, 7/8 of clip 0 stays loud ...
    assert agreement["42"] == [1.0, 1.0]
    # ... replaced, only 1/8 does; 63 % = 10 elements covers all of channel 0
    assert drop["42"] == [1.0, 0.0] and drop["63"] == [1.0, 0.0]
    assert agreement["0"] == [0.0, 1.0]  # nothing kept: the quiet fill, which only the quiet clip agrees with


def between_middle_scores(scores: torch.Tensor) -> torch.Tensor:
    """A threshold equal to no clip's score, so rounding cannot decide a comparison."""
    ordered = scores.sort().values
    return (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2


def slow_agreement(ctx: MetricContext, ranking: torch.Tensor, keep: bool) -> np.ndarray:
    """Per clip and per fraction: argsort descending, mask, decode, score, decide at the clip's codec threshold."""
    extra, logmel = ctx.explanation.extra, LogMel(SPEC)
    threshold = extra["codec_threshold"]
    with torch.no_grad():
        ref = ctx.detector.score(logmel(extra["codec_reconstruction"])) >= threshold
    out = np.zeros((len(KEEP_PERCENT), len(ranking)))
    for b in range(len(ranking)):
        order = np.argsort(-ranking[b].flatten().numpy(), kind="stable")
        for k, q in enumerate(KEEP_PERCENT):
            sel = np.zeros(order.size, dtype=bool)
            sel[order[: int(round(q / 100 * order.size))]] = True
            sel = torch.from_numpy(sel if keep else ~sel).reshape(ranking[b].shape)
            z = torch.where(sel, extra["latent"][b], extra["latent_fill"][b])
            with torch.no_grad():
                d = ctx.detector.score(logmel(extra["synthesis"].decode(z[None])))[0] >= threshold[b]
            out[k, b] = float(d == ref[b])
    return out


def test_registered_sweeps_match_a_slow_per_clip_reference() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.rand(4, 2, 8, generator=g)
    attribution = torch.randn(4, 2, 8, generator=g)
    det = Loudness()
    ctx = latent_context(z, attribution, det)
    set_codec_threshold(ctx, between_middle_scores(ctx.scores))
    det.eer_threshold = torch.tensor(math.inf)  # the detector's own threshold plays no part in the latent sweeps
    agreement, drop = metric("agreement", ctx), metric("drop", ctx)
    want_kept, want_removed = slow_agreement(ctx, attribution, True), slow_agreement(ctx, attribution, False)
    for k, q in enumerate(KEEP_PERCENT):
        assert agreement[str(q)] == want_kept[k].tolist()
        assert drop[str(q)] == (1 - want_removed[k]).tolist()
    ranking = torch.rand(z.shape, generator=torch.Generator().manual_seed(0))  # what the context's generator draws
    random_agreement = metric("agreement_random", ctx)
    want = slow_agreement(ctx, ranking, True)
    assert all(random_agreement[str(q)] == want[k].tolist() for k, q in enumerate(KEEP_PERCENT))


def test_a_codec_that_shifts_every_score_no_longer_saturates_the_sweep() -> None:
    """A codec 40 dB too loud: at the detector's EER threshold (set on the clips themselves) every decoded input,
    the decoded normal ones included, reads anomalous, so agreement was 1 and drop 0 at every fraction, for the
    explanation and the random baseline alike. At the threshold calibrated on decoded normals the loud clip
    (anomalous) and the quiet one (normal) are told apart again and the sweep's ends differ."""
    loud_codec = ToneDecoder(gain=100.0)
    z = torch.zeros(2, 2, 8)
    z[0, 0], z[1, 0] = 1.0, 1e-3
    fill = torch.zeros(2, 2, 8)
    fill[:, 0] = 1e-3
    attribution = torch.stack([torch.tensor([[1.0] * 8, [0.0] * 8])] * 2)
    det = Loudness()
    ctx = latent_context(z, attribution, det, fill, decoder=loud_codec)
    det.eer_threshold = (ctx.scores[0] + ctx.scores[1]) / 2  # the clips: loud anomalous, quiet normal
    normals = torch.zeros(20, 2, 8)
    normals[:, 0] = torch.linspace(0.5e-3, 1.5e-3, 20)[:, None]  # quiet like the normal clip
    logmel = LogMel(SPEC)
    with torch.no_grad():
        decoded_normal_scores = det.score(logmel(loud_codec.decode(normals)))
    assert (det.decision(decoded_normal_scores) == 1).all()  # the defect: decoded normals read anomalous
    with torch.no_grad():  # the clips as they are: every quiet normal reads normal at the EER threshold
        own_normal_scores = det.score(logmel(ToneDecoder().decode(normals)))
    set_codec_threshold(ctx, calibrated_threshold(decoded_normal_scores,
                                                  normal_share(own_normal_scores, det.eer_threshold)))
    for selection in ("", "_random"):
        agreement, drop = metric("agreement" + selection, ctx), metric("drop" + selection, ctx)
        assert agreement["100"] == [1.0, 1.0] and agreement["0"] == [0.0, 1.0]
        assert drop["100"] == [1.0, 0.0] and drop["0"] == [0.0, 0.0]
        assert sweep_saturated({q: float(np.mean(v)) for q, v in agreement.items()}) is None


def test_input_ig_baseline_keeps_everything_at_100_and_removes_nothing_at_0() -> None:
    g = torch.Generator().manual_seed(4)
    z = torch.rand(3, 2, 8, generator=g)
    det = Loudness()
    ctx = latent_context(z, torch.randn(3, 2, 8, generator=g), det)
    det.eer_threshold = between_middle_scores(ctx.scores)
    agreement, drop = metric("agreement_input_ig", ctx), metric("drop_input_ig", ctx)
    assert agreement["100"] == [1.0, 1.0, 1.0] and drop["0"] == [0.0, 0.0, 0.0]
    # all samples zeroed = silence, the quietest input there is: only clips judged anomalous flip
    flipped = [float(d) for d in det.decision(ctx.scores).tolist()]
    assert drop["100"] == flipped and agreement["0"] == [1.0 - f for f in flipped]


def test_codec_floor_met_publishes_the_explainers_verdict() -> None:
    ctx = latent_context(torch.rand(2, 2, 8, generator=torch.Generator().manual_seed(7)), torch.zeros(2, 2, 8),
                         Loudness())
    assert metric("codec_floor_met", ctx) == {"": [1.0, 1.0]}
    ctx.explanation.extra["codec_floor_met"] = torch.zeros(2)
    assert metric("codec_floor_met", ctx) == {"": [0.0, 0.0]}


@pytest.mark.parametrize("name", ["codec_si_sdr", "codec_logmel_l1"])
def test_codec_quality_metrics_compare_the_reconstruction_with_the_clip(name: str) -> None:
    g = torch.Generator().manual_seed(5)
    ctx = latent_context(torch.rand(2, 2, 8, generator=g), torch.zeros(2, 2, 8), Loudness())
    clip = ctx.batch.waveform
    noisy = clip + 0.01 * torch.randn(clip.shape, generator=g)
    ctx.batch.waveform = noisy
    ctx.batch.x = LogMel(SPEC)(noisy)
    value = torch.tensor(metric(name, ctx)[""], dtype=torch.float64)
    if name == "codec_si_sdr":
        assert torch.allclose(value, si_sdr(clip, noisy))
    else:
        assert torch.allclose(value, logmel_l1(LogMel(SPEC)(clip), ctx.batch.x))
        assert (value > 0).all()


def test_the_sweep_metrics_charge_the_passes_they_ran_once() -> None:
    """A decoded sweep costs one detector pass per keep fraction, the reference decision one, the input IG its
    steps forward and backward; a metric of the same batch that reuses them is charged nothing for them (the
    constants charged every metric the whole sweep again)."""
    g = torch.Generator().manual_seed(5)
    z = torch.rand(3, 2, 8, generator=g)
    det = Loudness()
    ctx = latent_context(z, torch.randn(3, 2, 8, generator=g), det)
    set_codec_threshold(ctx, between_middle_scores(ctx.scores))
    det.eer_threshold = between_middle_scores(ctx.scores)
    k = float(len(KEEP_PERCENT))
    charged = {name: (r.forward_passes, r.backward_passes) for name in
               ("agreement", "drop", "agreement_random", "drop_random", "agreement_input_ig", "drop_input_ig")
               for r in [registry("metric").get(name).factory(ctx)]}
    steps = float(INPUT_IG_STEPS)
    assert charged == {"agreement": (k + 1, 0.0), "drop": (k, 0.0), "agreement_random": (k, 0.0),
                       "drop_random": (k, 0.0), "agreement_input_ig": (steps + k + 1, steps), "drop_input_ig": (k, 0.0)}
