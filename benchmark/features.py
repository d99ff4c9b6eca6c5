"""The canonical time-frequency grid: `FeatureSpec`, the differentiable `LogMel`, and truth on the grid.

Shapes: waveforms `w: [B, N]`; log-mel `x: [B, 1, F, T]`; masks `[F, T]`; frame labels `[T]`.
Frames are centred (frame t covers time t·hop/sr), so a clip of N samples has `1 + N // hop` frames.

Two kinds of grid: `kind="mel"` (the default: F = `n_mels` mel bands) and `kind="stft"` (a log-power
STFT: F = `n_fft // 2 + 1` linear bins, bin k centred at k·sr/n_fft; see `stft_spec`). Code that needs
the number of frequency rows reads `spec.n_bins` (or `spec.grid`), and their edges `spec.band_edges_hz()`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Literal

import torch
import torchaudio

from .errors import BenchmarkError

LogType = Literal["db", "log10"]
KindType = Literal["mel", "stft"]
KINDS = ("mel", "stft")


@dataclass(frozen=True)
class FeatureSpec:
    """How a dataset's waveforms map to its log-mel (or log-STFT) grid (one grid per dataset).

    `kind="mel"`: `n_mels` mel bands between `f_min` and `f_max` on `mel_scale`. `kind="stft"`: the
    `n_fft // 2 + 1` bins of the STFT power, 0..sr/2; `n_mels`, `f_min`, `f_max` and `mel_scale` are then
    unused (`stft_spec` sets `n_mels` to the bin count all the same). `kind` is left out of `to_dict` for
    mel specs, so their dicts and the cache keys hashed from them are what they were before it existed.
    """

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: Literal["htk", "slaney"] = "htk"
    log: LogType = "db"
    duration_s: float = 10.0
    kind: KindType = "mel"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BenchmarkError(f"feature kind {self.kind!r} is unknown; use one of {', '.join(KINDS)}")

    @property
    def n_bins(self) -> int:
        """Number of frequency rows F of the grid: `n_mels` for mel, `n_fft // 2 + 1` for stft."""
        return self.n_fft // 2 + 1 if self.kind == "stft" else self.n_mels

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def n_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop_length

    @property
    def grid(self) -> tuple[int, int]:
        """(F, T) of a clip of the nominal duration."""
        return self.n_bins, self.n_frames

    def frames_for(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def with_duration(self, duration_s: float) -> FeatureSpec:
        return replace(self, duration_s=float(duration_s))

    def band_edges_hz(self) -> torch.Tensor:
        """Lower and upper edge in Hz of every frequency row: `[F, 2]` float64.

        mel: the outer corners of each triangular mel filter; stft: bin k spans k·sr/n_fft ± half a bin,
        clipped to [0, sr/2].
        """
        if self.kind == "stft":
            width = self.sample_rate / self.n_fft
            centre = torch.arange(self.n_bins, dtype=torch.float64) * width
            edges = torch.stack([centre - width / 2, centre + width / 2], dim=1)
            return edges.clamp(0.0, self.sample_rate / 2)
        return self._mel_edges_hz()

    def mel_band_edges_hz(self) -> torch.Tensor:
        """Alias of `band_edges_hz` (the name from before stft grids)."""
        return self.band_edges_hz()

    def _mel_edges_hz(self) -> torch.Tensor:
        f_max = self.f_max or self.sample_rate / 2
        m_lo, m_hi = _hz_to_mel(self.f_min, self.mel_scale), _hz_to_mel(f_max, self.mel_scale)
        pts = torch.linspace(m_lo, m_hi, self.n_mels + 2, dtype=torch.float64)
        hz = torch.tensor([_mel_to_hz(float(m), self.mel_scale) for m in pts], dtype=torch.float64)
        return torch.stack([hz[:-2], hz[2:]], dim=1)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.kind == "mel":
            del d["kind"]
        return d


def stft_spec(spec: FeatureSpec, frame_ms: float = 25.0, hop_ms: float = 10.0) -> FeatureSpec:
    """The log-power STFT grid of `spec`'s sample rate, duration and log: `frame_ms` windows every `hop_ms`,
    n_fft the next power of two at or above the window (16 kHz: win 400, hop 160, n_fft 512 -> 257 bins)."""
    if not frame_ms > 0 or not hop_ms > 0:
        raise BenchmarkError(f"stft frame {frame_ms} ms and hop {hop_ms} ms must both be positive")
    if hop_ms > frame_ms:
        raise BenchmarkError(f"stft hop {hop_ms} ms is longer than the frame {frame_ms} ms; use hop <= frame")
    win = round(frame_ms * spec.sample_rate / 1000)
    hop = round(hop_ms * spec.sample_rate / 1000)
    if win < 2 or hop < 1:
        raise BenchmarkError(f"stft frame {frame_ms} ms / hop {hop_ms} ms are under two / one samples at "
                             f"{spec.sample_rate} Hz; use longer ones")
    n_fft = 1 << (win - 1).bit_length()
    return replace(spec, kind="stft", n_fft=n_fft, win_length=win, hop_length=hop, n_mels=n_fft // 2 + 1,
                   f_min=0.0, f_max=None)


def _hz_to_mel(f: float, scale: str) -> float:
    if scale == "htk":
        return 2595.0 * math.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    if f < min_log_hz:
        return f / f_sp
    return min_log_hz / f_sp + math.log(f / min_log_hz) / (math.log(6.4) / 27.0)


def _mel_to_hz(m: float, scale: str) -> float:
    if scale == "htk":
        return 700.0 * (10 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    if m < min_log_mel:
        return f_sp * m
    return min_log_hz * math.exp((math.log(6.4) / 27.0) * (m - min_log_mel))


PRESETS: dict[str, FeatureSpec] = {
    # DCASE task 2 baseline: 16 kHz, n_fft 1024, hop 512, 128 mels, 10·log10 power -> 128 x 313
    "dcase": FeatureSpec(16000, 1024, 1024, 512, 128, 0.0, 8000.0, "htk", "db"),
    # Wood planer: 80 mels, 50 ms windows, 25 ms hop (40 frames/s), log10(mel + 1e-10) -> 80 x 401
    "planer": FeatureSpec(20000, 1024, 1000, 500, 80, 0.0, 10000.0, "htk", "log10"),
}


def preset(name: str) -> FeatureSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise BenchmarkError(f"unknown feature preset {name!r}; presets: {', '.join(PRESETS)}") from None


class LogMel(torch.nn.Module):
    """Differentiable waveform -> log-mel (or log-STFT power for stft specs): `[B, N] -> [B, 1, F, T]`
    (float32, on the input's device). `self.mel` is the power transform onto the grid, `[B, N] -> [B, F, T]`:
    a `MelSpectrogram` for mel specs, a `Spectrogram` for stft ones (same window, hop, centring)."""

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.spec = spec
        if spec.kind == "stft":
            self.mel = torchaudio.transforms.Spectrogram(
                n_fft=spec.n_fft, win_length=spec.win_length, hop_length=spec.hop_length, power=2.0,
                center=True, pad_mode="reflect",
            )
            return
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=spec.sample_rate, n_fft=spec.n_fft, win_length=spec.win_length,
            hop_length=spec.hop_length, f_min=spec.f_min, f_max=spec.f_max, n_mels=spec.n_mels,
            power=2.0, center=True, pad_mode="reflect", mel_scale=spec.mel_scale,
            norm="slaney" if spec.mel_scale == "slaney" else None,
        )

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if w.dim() == 1:
            w = w.unsqueeze(0)
        power = self.mel(w)
        if self.spec.log == "db":
            out = 10.0 * torch.log10(power + torch.finfo(torch.float32).eps)
        else:
            out = torch.log10(power + 1e-10)
        return out.unsqueeze(1)


@lru_cache(maxsize=8)
def _mel_power(spec: FeatureSpec) -> torch.nn.Module:
    return LogMel(spec).mel


def power_mel(spec: FeatureSpec, w: torch.Tensor) -> torch.Tensor:
    """Power on the grid (no log) of waveforms `[B, N] -> [B, F, T]`, for ideal-binary-mask ground truth:
    mel power for mel specs, STFT power for stft ones."""
    return _mel_power(spec).to(w.device)(w)


def frame_labels_from_intervals(
    intervals: Iterable[tuple[float, float]], spec: FeatureSpec, n_frames: int
) -> torch.Tensor:
    """Half-open time intervals in seconds -> frame labels `[T]` bool (frame t at t·hop/sr)."""
    labels = torch.zeros(n_frames, dtype=torch.bool)
    fps = spec.frames_per_second
    for onset_s, offset_s in intervals:
        lo = max(0, math.ceil(onset_s * fps - 1e-9))
        hi = min(n_frames, math.ceil(offset_s * fps - 1e-9))
        if hi > lo:
            labels[lo:hi] = True
    return labels


def mask_from_events(events: Iterable, spec: FeatureSpec, n_frames: int) -> torch.Tensor:
    """Events -> time-frequency mask `[F, T]` bool; an event without a band covers all frequency rows, one
    with a band the rows whose `band_edges_hz` overlap it."""
    edges = spec.band_edges_hz()
    mask = torch.zeros(spec.n_bins, n_frames, dtype=torch.bool)
    for ev in events:
        frames = frame_labels_from_intervals([(ev.onset_s, ev.offset_s)], spec, n_frames)
        if ev.f_lo_hz is None or ev.f_hi_hz is None:
            bands = torch.ones(spec.n_bins, dtype=torch.bool)
        else:
            bands = (edges[:, 1] > ev.f_lo_hz) & (edges[:, 0] < ev.f_hi_hz)
        mask |= bands[:, None] & frames[None, :]
    return mask
