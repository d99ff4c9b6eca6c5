"""Audio quality of listenable explanations against the true anomaly component (synthetic data).

The synthetic generators render every anomalous clip with and without its anomaly, so the anomaly
waveform `a = x_anomalous − x_normal_twin` is known exactly (DESIGN §4.1); an explanation that
isolates the anomaly should resemble it. Also usable for a codec's reconstruction quality.

- `si_sdr`: scale-invariant signal-to-distortion ratio (Le Roux et al., 2019) in dB, both signals
  made zero-mean first; higher is better.
- `logmel_distance`: mean absolute difference of the two signals' log-mel on the dataset's grid, in
  the grid's log units (dB for `db` grids, decades for `log10`); lower is better.

Shapes: estimate and target `[B, N]` (same N), results `[B]`.
"""
from __future__ import annotations

import torch

from ..features import FeatureSpec, LogMel
from ..needs import Need
from ..registry import metrics
from .context import MetricContext, MetricResult

AUDIO_NEEDS = {Need.AUDIO, Need.EXPLANATION_AUDIO}


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


@metrics.register("si_sdr", summary="SI-SDR (dB) of the listenable explanation against the true anomaly waveform",
                  version=1, needs=AUDIO_NEEDS, family="audio_quality", higher_is_better=True)
def si_sdr_metric(ctx: MetricContext) -> MetricResult:
    return MetricResult(values={"": si_sdr(ctx.explanation.audio, ctx.batch.anomaly)})


@metrics.register("logmel_distance",
                  summary="mean |log-mel difference| between the listenable explanation and the true anomaly",
                  version=1, needs=AUDIO_NEEDS, family="audio_quality", higher_is_better=False)
def logmel_distance_metric(ctx: MetricContext) -> MetricResult:
    return MetricResult(values={"": logmel_distance(ctx.explanation.audio, ctx.batch.anomaly, ctx.spec)})
