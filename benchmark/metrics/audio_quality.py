"""Audio quality of listenable explanations against the true anomaly component (synthetic data).

The synthetic generators render every anomalous clip with and without its anomaly, so the anomaly
waveform `a = x_anomalous − x_normal_twin` is known exactly (DESIGN §4.1); an explanation that
isolates the anomaly should resemble it. Also usable for a codec's reconstruction quality.

- `si_sdr`: scale-invariant signal-to-distortion ratio (Le Roux et al., 2019) in dB, both signals
  made zero-mean first; higher is better.
- `logmel_distance`: mean absolute difference of the two signals' log-mel on the dataset's grid, in
  the grid's log units (dB for `db` grids, decades for `log10`); lower is better.

Both also report two reference levels on the same clips, so an explanation's audio is read against what
no explanation and a perfect one would score (parameters `input` and `oracle`, never ranked —
`REFERENCE_PARAMS`): `[input]` scores the clip itself as the explanation (play everything), `[oracle]` the
ideal binary mask of the true anomaly through the masking path of the mask-based explainers: the clip's STFT
(the grid's window, hop and FFT size) kept where the anomaly's power exceeds its normal twin's, inverted with
the clip's own phase (`ideal_mask_audio`, the usual oracle of source separation). An explanation between the
two has isolated part of the anomaly; one below `[input]` made the clip less like its anomaly than leaving
it alone. The EnCodec path has a second ceiling of its own (the codec's reconstruction of the anomaly),
which this oracle does not include.

Shapes: estimate and target `[B, N]` (same N), results `[B]`.
"""
from __future__ import annotations

import torch

from ..features import FeatureSpec, LogMel
from ..needs import Need
from ..references import REFERENCE_PARAMS
from ..registry import metrics
from .context import MetricContext, MetricResult

AUDIO_NEEDS = {Need.WAVEFORM, Need.AUDIO, Need.EXPLANATION_AUDIO}


def si_sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SI-SDR in dB, `[B, N], [B, N] -> [B]` (float64 inside; float32 out).

    10·log10(‖αs‖² / ‖αs − ŝ‖²) with α = ⟨ŝ, s⟩ / ‖s‖² after removing each signal's mean. A silent
    target has no defined SI-SDR: refused, since a floor value would skew any average.
    """
    if estimate.shape != target.shape:
        raise ValueError(f"si_sdr: estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ in shape")
    s_hat = estimate.double() - estimate.double().mean(dim=-1, keepdim=True)
    s = target.double() - target.double().mean(dim=-1, keepdim=True)
    energy = s.pow(2).sum(dim=-1)
    if not bool((energy > 0).all()):
        silent = torch.nonzero(energy <= 0).flatten().tolist()
        raise ValueError(f"si_sdr: target row(s) {silent} are silent (no anomaly component); score only clips "
                         "whose anomaly waveform is known and non-zero")
    scaled = (s_hat * s).sum(dim=-1, keepdim=True) / energy[:, None] * s
    residual = scaled - s_hat
    tiny = torch.finfo(torch.float64).tiny
    ratio = scaled.pow(2).sum(dim=-1).clamp_min(tiny) / residual.pow(2).sum(dim=-1).clamp_min(tiny)
    return (10.0 * torch.log10(ratio)).float()


def logmel_distance(estimate: torch.Tensor, target: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Mean |LogMel(estimate) − LogMel(target)| over the grid: `[B, N], [B, N] -> [B]`."""
    if estimate.shape != target.shape:
        raise ValueError(f"logmel_distance: estimate {tuple(estimate.shape)} and target {tuple(target.shape)} "
                         "differ in shape")
    logmel = LogMel(spec).to(estimate.device)
    return (logmel(estimate.float()) - logmel(target.float())).abs().mean(dim=(1, 2, 3))


def ideal_mask_audio(waveform: torch.Tensor, anomaly: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """The ideal-binary-mask oracle `[B, N]`: `iSTFT(STFT(w) · [|STFT(a)|² > |STFT(w − a)|²])` with the clip's
    phase, on the STFT the grid is computed from (`spec`'s FFT size, window and hop, centred)."""
    if waveform.shape != anomaly.shape:
        raise ValueError(f"ideal_mask_audio: waveform {tuple(waveform.shape)} and anomaly {tuple(anomaly.shape)} "
                         "differ in shape")
    window = torch.hann_window(spec.win_length, device=waveform.device)

    def stft(w: torch.Tensor) -> torch.Tensor:
        return torch.stft(w.float(), spec.n_fft, spec.hop_length, spec.win_length, window=window, center=True,
                          pad_mode="reflect", return_complex=True)

    clip = stft(waveform)
    keep = stft(anomaly).abs().pow(2) > stft(waveform - anomaly).abs().pow(2)
    return torch.istft(clip * keep, spec.n_fft, spec.hop_length, spec.win_length, window=window, center=True,
                       length=waveform.shape[-1])


def _with_references(score, ctx: MetricContext) -> dict[str, torch.Tensor]:
    """`score(estimate, target)` of the explanation and of the two reference levels on the same clips."""
    batch = ctx.batch
    oracle = ideal_mask_audio(batch.waveform, batch.anomaly, ctx.spec)
    clip_label, oracle_label = REFERENCE_PARAMS
    return {"": score(ctx.explanation.audio, batch.anomaly), clip_label: score(batch.waveform, batch.anomaly),
            oracle_label: score(oracle, batch.anomaly)}


@metrics.register("si_sdr", summary="SI-SDR (dB) of the listenable explanation against the true anomaly waveform",
                  version=2, needs=AUDIO_NEEDS, family="audio_quality", higher_is_better=True,
                  params="reference", headline=("",))
def si_sdr_metric(ctx: MetricContext) -> MetricResult:
    return MetricResult(values=_with_references(si_sdr, ctx))


@metrics.register("logmel_distance",
                  summary="mean |log-mel difference| between the listenable explanation and the true anomaly",
                  version=2, needs=AUDIO_NEEDS, family="audio_quality", higher_is_better=False,
                  params="reference", headline=("",))
def logmel_distance_metric(ctx: MetricContext) -> MetricResult:
    return MetricResult(values=_with_references(lambda e, t: logmel_distance(e, t, ctx.spec), ctx))
