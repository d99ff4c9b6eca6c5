"""The log-power STFT grid (`FeatureSpec(kind="stft")`, `stft_spec`): numbers, truth, and AST+kNN on 257 rows."""
from __future__ import annotations

import math

import pytest
import torch

from benchmark import make
from benchmark.errors import BenchmarkError
from benchmark.features import FeatureSpec, LogMel, mask_from_events, power_mel, preset, stft_spec
from benchmark.registry import detectors
from benchmark.types import Event

SR = 16000


def sine(freq_hz: float, seconds: float = 0.5, sr: int = SR) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (0.5 * torch.sin(2 * math.pi * freq_hz * t)).float()


def reference_power(spec: FeatureSpec, w: torch.Tensor) -> torch.Tensor:
    """|STFT|² computed directly with torch.stft (Hann window of win_length, centred, reflect padding)."""
    s = torch.stft(w, spec.n_fft, spec.hop_length, spec.win_length, window=torch.hann_window(spec.win_length),
                   center=True, pad_mode="reflect", return_complex=True)
    return s.abs() ** 2


def test_stft_spec_at_16_khz_is_25_ms_frames_10_ms_hop_512_point_fft():
    spec = stft_spec(preset("dcase"))
    assert (spec.win_length, spec.hop_length, spec.n_fft) == (400, 160, 512)
    assert spec.kind == "stft" and spec.n_bins == 257
    assert spec.sample_rate == 16000 and spec.duration_s == 10.0 and spec.log == "db"
    assert spec.grid == (257, 1 + 160000 // 160) == (257, 1001)
    short = stft_spec(preset("dcase").with_duration(4.0))
    assert short.grid == (257, 1 + 64000 // 160)
    # other rates: the window rounds, n_fft is the next power of two at or above it
    planer = stft_spec(preset("planer"))
    assert (planer.win_length, planer.hop_length, planer.n_fft, planer.n_bins) == (500, 200, 512, 257)
    assert planer.log == "log10" and planer.sample_rate == 20000
    assert stft_spec(preset("dcase"), frame_ms=32.0, hop_ms=16.0).n_fft == 512  # 512 samples: already a power


@pytest.mark.parametrize("frame_ms,hop_ms", [(0.0, 10.0), (-25.0, 10.0), (25.0, 0.0), (25.0, -1.0), (25.0, 30.0)])
def test_stft_spec_rejects_bad_frames(frame_ms, hop_ms):
    with pytest.raises(BenchmarkError) as err:
        stft_spec(preset("dcase"), frame_ms=frame_ms, hop_ms=hop_ms)
    assert "\n" not in str(err.value)


def test_unknown_kind_is_refused():
    with pytest.raises(BenchmarkError, match="kind"):
        FeatureSpec(16000, 512, 400, 160, 64, kind="cqt")


@pytest.mark.parametrize("log", ["db", "log10"])
def test_logmel_stft_equals_log_of_torch_stft_power(log):
    spec = stft_spec(preset("dcase").with_duration(0.5))
    spec = FeatureSpec(**{**spec.to_dict(), "log": log})
    f = 1234.0
    w = torch.stack([sine(f), 0.25 * sine(f)])
    x = LogMel(spec)(w)
    n = w.shape[1]
    assert x.shape == (2, 1, 257, 1 + n // 160) == (2, 1, 257, 51)
    assert x.shape[-1] == spec.frames_for(n) and x.shape[-2:] == spec.grid
    power = reference_power(spec, w)
    want = 10.0 * torch.log10(power + torch.finfo(torch.float32).eps) if log == "db" else torch.log10(power + 1e-10)
    torch.testing.assert_close(x[:, 0], want, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(power_mel(spec, w), power, rtol=1e-4, atol=1e-6)
    # the sine's energy peaks in bin round(f·n_fft/sr) = round(39.49) = 39: overall, and in every frame
    # whose window lies inside the clip (the two edge frames see the reflect padding's kink)
    peak = round(f * spec.n_fft / SR)
    assert peak == 39
    assert int(power[0].sum(dim=1).argmax()) == peak
    assert (x[0, 0, :, 2:-2].argmax(dim=0) == peak).all()
    # ... and that bin's edges contain the sine's frequency
    edges = spec.band_edges_hz()
    assert edges.shape == (257, 2) and edges.dtype == torch.float64
    assert float(edges[peak, 0]) <= f < float(edges[peak, 1])
    assert edges[peak].tolist() == [38.5 * 31.25, 39.5 * 31.25]


def test_stft_band_edges_are_half_a_bin_either_side_clipped_to_nyquist():
    spec = stft_spec(preset("dcase"))
    edges = spec.band_edges_hz()
    width = 16000 / 512
    assert edges[0].tolist() == [0.0, width / 2]
    assert edges[1].tolist() == [width / 2, 1.5 * width]
    assert edges[-1].tolist() == [8000.0 - width / 2, 8000.0]
    assert torch.equal(edges[1:, 0], edges[:-1, 1])  # contiguous
    assert torch.equal(spec.mel_band_edges_hz(), edges)  # the old name is an alias


def test_mask_from_events_marks_the_stft_rows_overlapping_the_band():
    spec = stft_spec(preset("dcase").with_duration(2.0))
    n_frames = spec.n_frames
    assert n_frames == 201
    mask = mask_from_events([Event(0.5, 1.0, 1000.0, 2000.0)], spec, n_frames)
    assert mask.shape == (257, 201)
    # bin k spans (k ± 0.5)·31.25 Hz: it overlaps (1000, 2000) for k = 32 (1000..1031.25) to 64 (1984.4..2015.6)
    rows = torch.nonzero(mask.any(dim=1)).flatten().tolist()
    assert rows == list(range(32, 65))
    edges = spec.band_edges_hz()
    overlap = (edges[:, 1] > 1000.0) & (edges[:, 0] < 2000.0)
    assert torch.equal(mask.any(dim=1), overlap)
    # frames 0.5 s .. 1.0 s at 100 frames/s: 50..99
    cols = torch.nonzero(mask.any(dim=0)).flatten().tolist()
    assert cols == list(range(50, 100))
    assert int(mask.sum()) == 33 * 50
    # an event without a band covers every row
    full = mask_from_events([Event(0.5, 1.0)], spec, n_frames)
    assert full.shape == (257, 201) and full[:, 50:100].all() and not full[:, :50].any()


def test_mel_specs_are_unchanged():
    spec = preset("dcase")
    d = spec.to_dict()
    assert "kind" not in d
    assert d == {"sample_rate": 16000, "n_fft": 1024, "win_length": 1024, "hop_length": 512, "n_mels": 128,
                 "f_min": 0.0, "f_max": 8000.0, "mel_scale": "htk", "log": "db", "duration_s": 10.0}
    assert spec.kind == "mel" and spec.n_bins == 128 and spec.grid == (128, 313)
    assert torch.equal(spec.band_edges_hz(), spec.mel_band_edges_hz())
    assert spec.band_edges_hz().shape == (128, 2)
    assert FeatureSpec(**d) == spec
    # stft dicts carry the kind and round-trip
    s = stft_spec(spec)
    assert s.to_dict()["kind"] == "stft" and FeatureSpec(**s.to_dict()) == s
    assert s.to_dict() != d and hash(s) != hash(spec)
    # a mel spec's power is still the mel power
    assert power_mel(spec, sine(1000.0)[None]).shape == (1, 128, 1 + 8000 // 512)


def test_synthetic_clip_on_an_stft_grid_has_the_exact_stft_mask():
    ds = make("dataset", "synthetic-machines", size="tiny", seed=0)
    ds.spec = stft_spec(ds.spec)
    plan = next(p for p in ds.plans if p.label == 1)
    clip = ds.render(plan).clip
    n = clip.waveform.shape[0]
    assert clip.tf_mask.shape == (257, 1 + n // 160)
    twin = clip.waveform - clip.anomaly
    power = power_mel(ds.spec, torch.stack([clip.anomaly, twin]))
    assert power.shape == (2, 257, 1 + n // 160)
    assert torch.equal(clip.tf_mask, power[0] > power[1]) and clip.tf_mask.any()
    torch.testing.assert_close(power, reference_power(ds.spec, torch.stack([clip.anomaly, twin])),
                               rtol=1e-4, atol=1e-8)


def test_lmac_spread_is_the_identity_on_an_stft_grid():
    from adapters.explainers.lmac import mel_to_stft_bins
    assert torch.equal(mel_to_stft_bins(stft_spec(preset("dcase"))), torch.eye(257))
    assert mel_to_stft_bins(preset("dcase")).shape == (513, 128)


def test_ast_knn_scores_clips_on_the_257_row_grid(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    grid = stft_spec(preset("dcase").with_duration(4.0)).grid
    assert grid == (257, 401)
    torch.manual_seed(0)
    det = detectors.make("ast_knn", hidden_size=32, num_layers=1, num_heads=2, mel_shifts=[0])
    det.build(grid, 1)
    assert det.ast_grid == (272, 416) and det.patch_grid == (17, 26)  # padded to whole 16x16 patches
    assert det.input_mean.shape == (1, 1, 257, 1)
    train = torch.randn(3, 1, *grid) * 3.0 - 30.0
    det.remember_normals(train)
    det._fill_bank(train, batch_size=3)  # the untrained embeddings: enough to score
    det.eval()
    x = (torch.randn(2, 1, *grid) * 3.0 - 30.0).requires_grad_()
    s = det.score(x)
    assert s.shape == (2,) and torch.isfinite(s).all()
    s.sum().backward()
    assert x.grad.shape == (2, 1, 257, 401) and torch.isfinite(x.grad).all()
    with torch.no_grad():
        assert float(det.score(train[:1])[0]) == pytest.approx(0.0, abs=1e-3)  # a bank clip is at distance 0
