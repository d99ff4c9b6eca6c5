"""Model-randomisation sanity check (Adebayo et al. 2018), adapted to one-class detectors.

A copy of the detector has its layers re-initialised cumulatively from the top (output side) down in
a few cascade steps; the cell's explainer re-explains the batch with each randomised copy, and the
maps are compared with the original ones. An explanation that depends on what the detector learned
changes: low similarity passes the check, high similarity (an edge detector, an input-energy map) fails.

Layers are `detector.layers()` in encoder order (or, for a detector that names none, every module that
holds parameters, in registration order). Re-initialisation calls each module's own
`reset_parameters`; parameters of modules without one are redrawn from a normal distribution with the
original tensor's standard deviation.

Shapes: maps `[B, F, T]`, randomised maps `[K, B, F, T]` (K cascade steps), results `[K, B]`.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from ..detector import Detector
from ..registry import metrics
from ..types import Batch, Explanation
from ._passes import charge, result, shared
from ._ranking import average_ranks
from .context import MetricContext, MetricResult


def _layers(detector: Detector) -> list[torch.nn.Module]:
    named = list(detector.layers().values())
    if named:
        return named
    return [m for m in detector.modules() if any(True for _ in m.parameters(recurse=False))]


def reinitialise(module: torch.nn.Module) -> None:
    """Re-initialise every parameter of a module in place, with its submodules' own initialisers."""
    covered: set[int] = set()
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None) or getattr(sub, "_reset_parameters", None)
        if callable(reset):
            reset()
            covered.update(id(p) for p in sub.parameters(recurse=False))
    with torch.no_grad():
        for p in module.parameters():
            if id(p) not in covered:
                std = float(p.std()) if p.numel() > 1 else 0.0
                fan_in = p.shape[-1] if p.dim() else 1
                p.normal_(0.0, std if std > 0 else 1.0 / math.sqrt(fan_in))


def cascade_counts(n_layers: int, n_steps: int) -> list[int]:
    """How many layers (from the top) are randomised after each cascade step: ceil(k * L / n), k = 1..n."""
    return [math.ceil(k * n_layers / n_steps) for k in range(1, n_steps + 1)]


def cascade_labels(n_steps: int) -> list[str]:
    """Value labels "top33", "top67", "top100": the share of layers randomised (not digits only, so the
    leaderboard does not mistake them for percentiles)."""
    return [f"top{round(100 * k / n_steps)}" for k in range(1, n_steps + 1)]


def cascading_randomisation(detector: Detector, explain: Callable[[Detector, Batch], Explanation], batch: Batch,
                            *, n_steps: int, generator: torch.Generator) -> list[Explanation]:
    """Explanations of the batch by increasingly randomised copies of the detector (one per step)."""
    randomised = copy.deepcopy(detector)
    layers = _layers(randomised)
    if not layers:
        raise ValueError(f"{type(detector).__name__} has no parameters to randomise: the randomisation "
                         "check needs a trained detector with layers")
    top_down = layers[::-1]
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    devices = [d for d in {p.device for p in randomised.parameters()} if d.type == "cuda"]
    explanations, done = [], 0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for count in cascade_counts(len(layers), n_steps):
            for module in top_down[done:count]:
                reinitialise(module)
            done = count
            explanations.append(explain(randomised, batch))
    return explanations


def spearman_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of two maps per clip (ties get average ranks): `[B, ...] x2 -> [B]`;
    0 where either map is flat (no ranking to agree with)."""
    ra = average_ranks(a.reshape(len(a), -1))
    rb = average_ranks(b.reshape(len(b), -1))
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    norm = ra.norm(dim=-1) * rb.norm(dim=-1)
    return torch.where(norm > 0, (ra * rb).sum(-1) / torch.where(norm > 0, norm, 1.0), torch.zeros_like(norm))


def _unit_range(a: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1] (a flat map becomes 0): `[B, F, T]` float32 (ample for values in [0, 1],
    and several times faster to filter than float64 on a CPU)."""
    flat = a.reshape(len(a), -1).double()
    lo, hi = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    span = hi - lo
    return ((flat - lo) / torch.where(span > 0, span, 1.0)).reshape(a.shape).float()


def ssim(a: torch.Tensor, b: torch.Tensor, *, sigma: float = 1.5, window: int = 11) -> torch.Tensor:
    """Structural similarity of two maps per clip, each first scaled to [0, 1] (Wang et al. 2004: Gaussian
    window 11, sigma 1.5, K1 0.01, K2 0.03, mean over the positions where the window fits; the window
    shrinks to the grid when the grid is smaller): `[B, F, T] x2 -> [B]`."""
    x, y = _unit_range(a).unsqueeze(1), _unit_range(b).unsqueeze(1)
    down, across = (_gaussian(_odd_at_most(window, n), sigma, x.device) for n in x.shape[-2:])
    conv = torch.nn.functional.conv2d
    # the 2-D Gaussian window is separable: two 1-D passes instead of one 11 x 11 one
    blur = lambda t: conv(conv(t, down.reshape(1, 1, -1, 1)), across.reshape(1, 1, 1, -1))  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.double().mean(dim=(1, 2, 3))


def _odd_at_most(window: int, n: int) -> int:
    size = min(window, n)
    return size if size % 2 else size - 1


def _gaussian(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def randomisation_spearman(original: torch.Tensor, randomised: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of the original map with each randomised one: `[B, F, T], [K, B, F, T] -> [K, B]`."""
    k = len(randomised)
    together = original.unsqueeze(0).expand_as(randomised).flatten(0, 1)
    return spearman_correlation(together, randomised.flatten(0, 1)).reshape(k, -1)


def randomisation_ssim(original: torch.Tensor, randomised: torch.Tensor) -> torch.Tensor:
    """SSIM of the original map with each randomised one: `[B, F, T], [K, B, F, T] -> [K, B]`."""
    k = len(randomised)
    return ssim(original.unsqueeze(0).expand_as(randomised).flatten(0, 1), randomised.flatten(0, 1)).reshape(k, -1)


def _randomised_maps(ctx: MetricContext, n_steps: int) -> torch.Tensor:
    """Maps of the randomised cascade `[K, B, F, T]`, shared by both metrics; the explainer's passes are
    charged to whichever runs first."""
    def compute() -> torch.Tensor:
        explanations = cascading_randomisation(ctx.detector, ctx.explain, ctx.batch, n_steps=n_steps,
                                               generator=ctx.generator)
        charge(ctx, forward=sum(e.forward_passes for e in explanations),
               backward=sum(e.backward_passes for e in explanations))
        return torch.stack([e.attribution.detach() for e in explanations])
    return shared(ctx, ("randomisation", n_steps), compute)


@metrics.register("randomisation_spearman", summary="cascading layer randomisation of the detector (top down): "
                  "Spearman rank correlation of the original and the re-explained map (lower = passes)",
                  version=1, family="sanity", higher_is_better=False, params="layers randomised")
def randomisation_spearman_metric(ctx: MetricContext, *, n_steps: int = 3) -> MetricResult:
    values = randomisation_spearman(ctx.explanation.attribution, _randomised_maps(ctx, n_steps))
    return result(ctx, dict(zip(cascade_labels(n_steps), values, strict=True)))


@metrics.register("randomisation_ssim", summary="cascading layer randomisation of the detector (top down): SSIM "
                  "of the original and the re-explained map, each scaled to [0, 1] (lower = passes)",
                  version=1, family="sanity", higher_is_better=False, params="layers randomised")
def randomisation_ssim_metric(ctx: MetricContext, *, n_steps: int = 3) -> MetricResult:
    values = randomisation_ssim(ctx.explanation.attribution, _randomised_maps(ctx, n_steps))
    return result(ctx, dict(zip(cascade_labels(n_steps), values, strict=True)))
