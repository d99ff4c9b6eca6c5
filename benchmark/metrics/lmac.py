"""The L-MAC family (SpeechBrain ESC-50 interpretability recipes) on a one-class detector.

A one-class detector has no softmax; its calibrated anomaly probability p = `detector.p_anom` gives
the two class probabilities [1 - p, p] (normal, anomalous). The explained class c is the detector's
own prediction (argmax, "predicted" mode) or always "anomalous" ("anomalous" mode). With p_c on the
input x, o_c on the masked-in input and q_c on the masked-out input (per clip, then averaged later):
AI = 100 * 1[p_c < o_c]; AD = 100 * max(0, p_c - o_c) / p_c; AG = 100 * max(0, o_c - p_c) / (1 - p_c);
FF = p_c - q_c; Fid-In = 1[argmax o = c].

Masking: masked-in = M * x + (1 - M) * reference, masked-out = (1 - M) * x + M * reference. The L-MAC
recipes mask a magnitude spectrogram, where removing means zero energy; the "silence" of a log-mel is
not zero (zero is a loud 0 dB or log10 = 0 bin, far outside the data), so removed bins take a normal
level instead: by default (`fill="normal_band_mean"`) each band's mean log-mel over the detector's normal
training clips, the same for every clip and independent of the detector's output. `fill="reference"` takes
the detector's own normal counterpart (`detector.reference`), which for a reconstruction detector is its
reconstruction: then masked-in M·x + (1 − M)·AE(x) collapses the error whatever M is, and AI, AG and Fid-In
came out identical for every explainer (the quick tables, 5 groups).
M is the explainer's own mask where it returns one, else the top `mask_fraction` of bins by attribution.

Shapes: class probabilities `[B, C]`, explained class `[B]` long, results `[B]`.
"""
from __future__ import annotations

import torch

from ..registry import metrics
from ._passes import forward_bound, reference_of, result, score_stacked, shared
from ._ranking import top_fraction_mask
from .context import MetricContext, MetricResult

# the reference code's epsilon in the AD and AG denominators
EPS = 1e-10


def _pick(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return probs.double().gather(1, target.long().unsqueeze(1)).squeeze(1)


def ai(probs_x: torch.Tensor, probs_in: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Average increase: 100 if the masked-in input raises the explained class's probability."""
    return 100.0 * (_pick(probs_x, target) < _pick(probs_in, target)).double()


def ad(probs_x: torch.Tensor, probs_in: torch.Tensor, target: torch.Tensor, *, compat: bool = False) -> torch.Tensor:
    """Average drop: 100 * max(0, p_c - o_c) / p_c. `compat=True` reproduces the reference recipe, which
    applies a softmax to the already-normalised probabilities before comparing them."""
    if compat:
        probs_x, probs_in = probs_x.double().softmax(dim=1), probs_in.double().softmax(dim=1)
    p, o = _pick(probs_x, target), _pick(probs_in, target)
    return 100.0 * (p - o).clamp(min=0) / (p + EPS)


def ag(probs_x: torch.Tensor, probs_in: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Average gain: 100 * max(0, o_c - p_c) / (1 - p_c)."""
    p, o = _pick(probs_x, target), _pick(probs_in, target)
    return 100.0 * (o - p).clamp(min=0) / (1 - p + EPS)


def ff_out(probs_x: torch.Tensor, probs_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Faithfulness of the mask-out: p_c - q_c (higher = removing the explanation hurts the class more)."""
    return _pick(probs_x, target) - _pick(probs_out, target)


def fid_in(probs_in: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Input fidelity: 1 if the masked-in input alone is still classified as the explained class."""
    return (probs_in.argmax(dim=1) == target.long()).double()


def class_probabilities(p_anom: torch.Tensor) -> torch.Tensor:
    """A one-class detector's two class probabilities: `[B] -> [B, 2]` = [normal, anomalous]."""
    p = p_anom.double()
    return torch.stack([1 - p, p], dim=1)


def explanation_mask(attribution: torch.Tensor, mask_fraction: float) -> torch.Tensor:
    """Binary mask of the top `mask_fraction` of bins by attribution: `[B, F, T] -> [B, F, T]` float."""
    flat = attribution.reshape(len(attribution), -1)
    return top_fraction_mask(flat, mask_fraction).reshape(attribution.shape).to(attribution.dtype)


def masked_in_out(x: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked-in and masked-out inputs stacked: `[B, 1, F, T] x2, [B, F, T] -> [2, B, 1, F, T]`."""
    m = mask.unsqueeze(1).to(x.dtype)
    kept = m * x + (1 - m) * reference
    removed = (1 - m) * x + m * reference
    return torch.stack([kept, removed])


FILLS = ("normal_band_mean", "reference")


def normal_band_fill(detector, x: torch.Tensor) -> torch.Tensor:
    """Each band's mean log-mel over the detector's normal training clips, expanded to x `[B, 1, F, T]`."""
    mean = detector.normal_mean
    if mean.numel() == 0:
        raise ValueError("the detector holds no normal training mean (remember_normals was not called): "
                         "use the L-MAC metrics' fill = 'reference'")
    return mean.to(device=x.device, dtype=x.dtype).mean(dim=-1, keepdim=True).expand_as(x)


def _fill(ctx: MetricContext, fill: str) -> torch.Tensor:
    if fill == "normal_band_mean":
        return normal_band_fill(ctx.detector, ctx.batch.x)
    if fill == "reference":
        return reference_of(ctx)
    raise ValueError(f"L-MAC fill {fill!r}: use one of {', '.join(FILLS)}")


def _probabilities(ctx: MetricContext, mask_fraction: float,
                   fill: str = "normal_band_mean") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[1 - p, p] on x, masked-in and masked-out inputs, shared by the five metrics: each `[B, 2]`."""
    def compute():
        mask = ctx.explanation.mask
        if mask is None:
            mask = explanation_mask(ctx.explanation.attribution, mask_fraction)
        scores = score_stacked(ctx.detector.score, masked_in_out(ctx.batch.x, _fill(ctx, fill), mask),
                               forward_bound(ctx))
        p_in, p_out = ctx.detector.p_from_score(scores)
        return (class_probabilities(ctx.detector.p_from_score(ctx.scores)), class_probabilities(p_in),
                class_probabilities(p_out))
    # two passes per clip: the masked-in and the masked-out input
    return shared(ctx, ("lmac", mask_fraction if ctx.explanation.mask is None else "own", fill), compute, passes=2.0)


def _targets(probs_x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"predicted": probs_x.argmax(dim=1), "anomalous": torch.ones(len(probs_x), dtype=torch.long,
                                                                        device=probs_x.device)}


_SUMMARY = " (calibrated anomaly probability; param = explained class: the detector's prediction or 'anomalous')"


@metrics.register("ai", summary="L-MAC average increase: 100 * 1[p_c(masked-in) > p_c(x)]" + _SUMMARY, version=2,
                  family="lmac", higher_is_better=True, params="mode")
def ai_metric(ctx: MetricContext, *, mask_fraction: float = 0.2, fill: str = "normal_band_mean") -> MetricResult:
    probs_x, probs_in, _ = _probabilities(ctx, mask_fraction, fill)
    return result(ctx, {m: ai(probs_x, probs_in, c) for m, c in _targets(probs_x).items()})


@metrics.register("ad", summary="L-MAC average drop: 100 * max(0, p_c(x) - p_c(masked-in)) / p_c(x); compat=True "
                  "applies the reference's second softmax" + _SUMMARY, version=2, family="lmac",
                  higher_is_better=False, params="mode")
def ad_metric(ctx: MetricContext, *, mask_fraction: float = 0.2, compat: bool = False,
              fill: str = "normal_band_mean") -> MetricResult:
    probs_x, probs_in, _ = _probabilities(ctx, mask_fraction, fill)
    return result(ctx, {m: ad(probs_x, probs_in, c, compat=compat) for m, c in _targets(probs_x).items()})


@metrics.register("ag", summary="L-MAC average gain: 100 * max(0, p_c(masked-in) - p_c(x)) / (1 - p_c(x))" + _SUMMARY,
                  version=2, family="lmac", higher_is_better=True, params="mode")
def ag_metric(ctx: MetricContext, *, mask_fraction: float = 0.2, fill: str = "normal_band_mean") -> MetricResult:
    probs_x, probs_in, _ = _probabilities(ctx, mask_fraction, fill)
    return result(ctx, {m: ag(probs_x, probs_in, c) for m, c in _targets(probs_x).items()})


@metrics.register("ff_out", summary="L-MAC faithfulness: p_c(x) - p_c(masked-out)" + _SUMMARY, version=2,
                  family="lmac", higher_is_better=True, params="mode")
def ff_out_metric(ctx: MetricContext, *, mask_fraction: float = 0.2, fill: str = "normal_band_mean") -> MetricResult:
    probs_x, _, probs_out = _probabilities(ctx, mask_fraction, fill)
    return result(ctx, {m: ff_out(probs_x, probs_out, c) for m, c in _targets(probs_x).items()})


@metrics.register("fid_in", summary="L-MAC input fidelity: 1 if the masked-in input keeps the explained class"
                  + _SUMMARY, version=2, family="lmac", higher_is_better=True, params="mode")
def fid_in_metric(ctx: MetricContext, *, mask_fraction: float = 0.2, fill: str = "normal_band_mean") -> MetricResult:
    probs_x, probs_in, _ = _probabilities(ctx, mask_fraction, fill)
    return result(ctx, {m: fid_in(probs_in, c) for m, c in _targets(probs_x).items()})
