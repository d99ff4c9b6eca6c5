"""Robustness of the explanation: Captum's `sensitivity_max` and `infidelity` (Yeh et al. 2019).

Noise is scaled to each clip's own spread (the standard deviation of its input), because dB and log10
grids differ by an order of magnitude and a fixed radius would mean different things on each; it is
drawn from the metric context's seeded generator, so results repeat.

- sensitivity_max: max over perturbations of ||e(x + d) - e(x)|| / ||e(x)||, d uniform in an L-inf ball
  of radius `perturb_radius * std`; e re-runs the cell's explainer (n_perturb_samples explanations per
  clip). Where the batch has waveforms the noise is added to the waveform and x recomputed with
  `LogMel`, so waveform explainers (which never read x) and log-mel explainers face the same
  perturbation; feature-only data perturb the log-mel x `[B, 1, F, T]` directly.
- infidelity: E[(I . a - (s(x) - s(x - I)))^2] with Gaussian log-mel noise I of standard deviation
  `stdevs * std(x)`, Captum's `normalize=True` (attributions rescaled by the optimal factor), so maps on
  different scales (squared errors, gradients) compare; costs n_perturb_samples + 1 forward passes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from ..features import LogMel
from ..registry import metrics
from ._passes import ScoreFn, charge, result
from .context import MetricContext, MetricResult


def _clip_std(inputs: torch.Tensor) -> torch.Tensor:
    """Each clip's standard deviation, broadcastable to the inputs: `[N, ...] -> [N, 1, ...]`."""
    return inputs.flatten(1).std(dim=1).reshape(-1, *([1] * (inputs.dim() - 1)))


def sensitivity_max(explain: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, attribution: torch.Tensor,
                    *, generator: torch.Generator, n_perturb_samples: int = 4,
                    perturb_radius: float = 0.05) -> torch.Tensor:
    """Max relative change of the map under small input noise: inputs `[B, ...]`, map `[B, F, T]` -> `[B]`.

    `explain(perturbed inputs [N, ...]) -> [N, F, T]`; `attribution` is the map of the inputs themselves
    (not recomputed). Row i of a perturbed stack is a copy of clip i // n_perturb_samples.
    """
    # Captum reshapes the maps with `view`: a map that is a transposed view (a mel filterbank's output)
    # is laid out afresh
    def explanation_func(given):
        # Captum asks once for the unperturbed inputs, as a 1-tuple, and wants a tuple back
        if isinstance(given, tuple):
            return (attribution.contiguous(),)
        with torch.enable_grad():
            return explain(given).detach().contiguous()

    def perturb(given: torch.Tensor) -> torch.Tensor:
        unit = torch.rand(given.shape, generator=generator, dtype=given.dtype, device=generator.device)
        return given + (2 * unit.to(given.device) - 1) * perturb_radius * _clip_std(given)

    from captum.metrics import sensitivity_max as captum_sensitivity_max  # lazy: seconds at import

    return captum_sensitivity_max(explanation_func, inputs, perturb_func=perturb, n_perturb_samples=n_perturb_samples)


def infidelity(score: ScoreFn, x: torch.Tensor, attribution: torch.Tensor, *, generator: torch.Generator,
               n_perturb_samples: int = 10, stdevs: float = 0.05) -> torch.Tensor:
    """Captum infidelity with Gaussian perturbations, normalised: `[B, 1, F, T], [B, F, T] -> [B]`."""
    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unit = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype, device=generator.device)
        noise = unit.to(inputs.device) * stdevs * _clip_std(inputs)
        return noise, inputs - noise

    from captum.metrics import infidelity as captum_infidelity  # lazy: seconds at import

    with torch.no_grad():
        values = captum_infidelity(score, perturb, x, attribution.unsqueeze(1).to(x.dtype).contiguous(),
                                   n_perturb_samples=n_perturb_samples, normalize=True)
    return values.clamp(min=0)  # a mean of squares: only rounding takes it below zero


def _explain_perturbed(ctx: MetricContext) -> Callable[[torch.Tensor], torch.Tensor]:
    """Re-explain perturbed copies of the batch's waveforms (x recomputed) or, without waveforms, of x."""
    to_logmel = None if ctx.batch.waveform is None else LogMel(ctx.spec).to(ctx.batch.waveform.device)

    def explain(inputs: torch.Tensor) -> torch.Tensor:
        copies = len(inputs) // len(ctx.batch)
        rows = torch.arange(len(ctx.batch), device=inputs.device).repeat_interleave(copies)
        base = ctx.batch.select(rows)
        if to_logmel is None:
            perturbed = replace(base, x=inputs)
        else:
            perturbed = replace(base, waveform=inputs, x=to_logmel(inputs).to(base.x.dtype))
        explanation = ctx.explain(ctx.detector, perturbed)
        # the explanation's passes are per explained row; each clip had `copies` rows
        charge(ctx, forward=explanation.forward_passes * copies, backward=explanation.backward_passes * copies)
        return explanation.attribution
    return explain


@metrics.register("sensitivity_max", summary="Captum sensitivity_max: largest relative change of the map when the "
                  "input (waveform, else log-mel) is perturbed uniformly within perturb_radius x the clip's std "
                  "(lower = more robust)",
                  version=1, family="robustness", higher_is_better=False)
def sensitivity_max_metric(ctx: MetricContext, *, n_perturb_samples: int = 4,
                           perturb_radius: float = 0.05) -> MetricResult:
    inputs = ctx.batch.x if ctx.batch.waveform is None else ctx.batch.waveform
    values = sensitivity_max(_explain_perturbed(ctx), inputs, ctx.explanation.attribution,
                             generator=ctx.generator, n_perturb_samples=n_perturb_samples,
                             perturb_radius=perturb_radius)
    return result(ctx, {"": values})


@metrics.register("infidelity", summary="Captum infidelity (normalised): expected squared gap between the map's "
                  "linear prediction and the score change under Gaussian log-mel noise (lower = more faithful)",
                  version=1, family="robustness", higher_is_better=False)
def infidelity_metric(ctx: MetricContext, *, n_perturb_samples: int = 10, stdevs: float = 0.05) -> MetricResult:
    values = infidelity(ctx.detector.score, ctx.batch.x, ctx.explanation.attribution, generator=ctx.generator,
                        n_perturb_samples=n_perturb_samples, stdevs=stdevs)
    charge(ctx, forward=n_perturb_samples + 1)
    return result(ctx, {"": values})
