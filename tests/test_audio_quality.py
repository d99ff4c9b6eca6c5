"""SI-SDR and log-mel distance against slow numpy references from their formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.features import LogMel, preset
from benchmark.metrics.audio_quality import (
    ideal_mask_audio,
    logmel_distance,
    logmel_distance_metric,
    si_sdr,
    si_sdr_metric,
)
from benchmark.metrics.context import MetricContext
from benchmark.registry import metrics
from benchmark.types import Batch, Explanation

SPEC = preset("dcase").with_duration(0.5)


def si_sdr_numpy(estimate: np.ndarray, target: np.ndarray) -> float:
    """Le Roux et al. (2019), eq. (2)-(4), one clip at a time, zero-mean signals."""
    e = estimate - estimate.mean()
    s = target - target.mean()
    alpha = np.dot(e, s) / np.dot(s, s)
    projection = alpha * s
    noise = e - projection
    return 10.0 * math.log10(np.dot(projection, projection) / np.dot(noise, noise))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_si_sdr_matches_the_formula_over_batches(seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(5, 800, generator=g) + 0.3
    estimate = 0.7 * target + torch.randn(5, 800, generator=g) * torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0])[:, None]
    got = si_sdr(estimate, target)
    want = [si_sdr_numpy(estimate[i].numpy().astype(np.float64), target[i].numpy().astype(np.float64))
            for i in range(5)]
    assert got.shape == (5,)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-4)
    assert torch.all(got[:-1] > got[1:])  # more noise, lower SI-SDR


def test_si_sdr_known_value_scale_and_offset_invariance():
    n = 4000
    t = torch.arange(n, dtype=torch.float64)
    target = torch.sin(2 * math.pi * 0.01 * t)
    orthogonal = torch.cos(2 * math.pi * 0.01 * t)  # orthogonal over whole periods, zero mean
    estimate = target + 0.1 * orthogonal              # distortion 20 dB below the target
    got = si_sdr(estimate[None], target[None])
    assert float(got) == pytest.approx(20.0, abs=1e-3)
    rescaled = si_sdr(-3.0 * estimate[None] + 0.5, target[None])  # sign, gain and DC do not matter
    assert float(rescaled) == pytest.approx(20.0, abs=1e-3)


def test_si_sdr_refuses_silent_targets_and_shape_mismatch():
    with pytest.raises(ValueError, match="silent"):
        si_sdr(torch.randn(2, 100), torch.cat([torch.randn(1, 100), torch.zeros(1, 100)]))
    with pytest.raises(ValueError, match="shape"):
        si_sdr(torch.randn(2, 100), torch.randn(2, 99))


def test_logmel_distance_matches_numpy_and_a_gain_shift():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, SPEC.n_samples, generator=g)
    estimate = target + 0.3 * torch.randn(3, SPEC.n_samples, generator=g)
    got = logmel_distance(estimate, target, SPEC)
    lm = LogMel(SPEC)
    a, b = lm(estimate).numpy().astype(np.float64), lm(target).numpy().astype(np.float64)
    want = [np.abs(a[i] - b[i]).sum() / a[i].size for i in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    # doubling the amplitude raises every bin's power by 10·log10(4) dB
    doubled = logmel_distance(2.0 * target, target, SPEC)
    np.testing.assert_allclose(doubled.numpy(), 10 * math.log10(4.0), rtol=1e-4)
    assert torch.equal(logmel_distance(target, target, SPEC), torch.zeros(3))


def test_registered_metrics_read_the_explanation_audio_and_the_true_anomaly():
    g = torch.Generator().manual_seed(3)
    anomaly = torch.randn(2, SPEC.n_samples, generator=g)
    audio = anomaly + torch.tensor([0.1, 1.0])[:, None] * torch.randn(2, SPEC.n_samples, generator=g)
    f, t = SPEC.grid
    batch = Batch(ids=["a", "b"], x=torch.zeros(2, 1, f, t), labels=torch.ones(2, dtype=torch.long), meta=[{}, {}],
                  waveform=anomaly.clone(), anomaly=anomaly)
    ctx = MetricContext(batch=batch, explanation=Explanation(attribution=torch.zeros(2, f, t), audio=audio),
                        detector=None, spec=SPEC, scores=torch.zeros(2), explain=None,
                        generator=torch.Generator())
    assert torch.equal(si_sdr_metric(ctx).values[""], si_sdr(audio, anomaly))
    assert torch.equal(logmel_distance_metric(ctx).values[""], logmel_distance(audio, anomaly, SPEC))
    for name, higher in (("si_sdr", True), ("logmel_distance", False)):
        plugin = metrics.get(name)
        assert plugin.needs == {"waveform", "audio", "explanation_audio"}
        assert plugin.extra == {"family": "audio_quality", "higher_is_better": higher, "params": "reference",
                                "headline": ("",)}


def _tone(freq: float, n: int, sr: int) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(n) / sr)


def test_ideal_mask_oracle_recovers_an_anomaly_in_its_own_band():
    """A 3-kHz tone over a 300-Hz hum: the ideal mask keeps the tone's bins, so the oracle is near the anomaly
    (SI-SDR well above the clip's own), and a clip that is all anomaly comes back unchanged."""
    n, sr = SPEC.n_samples, SPEC.sample_rate
    anomaly = 0.5 * _tone(3000.0, n, sr)[None]
    clip = anomaly + _tone(300.0, n, sr)[None]
    oracle = ideal_mask_audio(clip, anomaly, SPEC)
    assert oracle.shape == clip.shape
    assert float(si_sdr(oracle, anomaly)) > 20.0
    assert float(si_sdr(clip, anomaly)) < -5.0      # the hum is 6 dB louder than the tone
    whole = ideal_mask_audio(anomaly, anomaly, SPEC)  # no normal part: every bin kept, perfect resynthesis
    torch.testing.assert_close(whole, anomaly, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="shape"):
        ideal_mask_audio(clip, anomaly[:, :-1], SPEC)


def test_metrics_report_the_clip_and_oracle_levels_on_the_same_clips():
    n, sr = SPEC.n_samples, SPEC.sample_rate
    g = torch.Generator().manual_seed(5)
    anomaly = 0.5 * torch.stack([_tone(3000.0, n, sr), _tone(2500.0, n, sr)])
    clip = anomaly + torch.stack([_tone(300.0, n, sr), _tone(400.0, n, sr)])
    audio = anomaly + 0.3 * torch.randn(2, n, generator=g)
    f, t = SPEC.grid
    batch = Batch(ids=["a", "b"], x=torch.zeros(2, 1, f, t), labels=torch.ones(2, dtype=torch.long), meta=[{}, {}],
                  waveform=clip, anomaly=anomaly)
    ctx = MetricContext(batch=batch, explanation=Explanation(attribution=torch.zeros(2, f, t), audio=audio),
                        detector=None, spec=SPEC, scores=torch.zeros(2), explain=None, generator=torch.Generator())
    got = si_sdr_metric(ctx).values
    assert set(got) == {"", "input", "oracle"}
    torch.testing.assert_close(got["input"], si_sdr(clip, anomaly))
    torch.testing.assert_close(got["oracle"], si_sdr(ideal_mask_audio(clip, anomaly, SPEC), anomaly))
    assert torch.all(got["input"] < got[""]) and torch.all(got[""] < got["oracle"])
    dist = logmel_distance_metric(ctx).values
    torch.testing.assert_close(dist["input"], logmel_distance(clip, anomaly, SPEC))
    assert torch.all(dist["oracle"] < dist["input"])
    assert metrics.get("si_sdr").spec.headline == ("",)
