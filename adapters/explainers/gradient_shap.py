"""GradientSHAP (Lundberg & Lee): expected gradients × (input − baseline) at random points between
a noised input and the baseline.

The input noise is `stdevs` times each clip's spread by default (`noise="relative"`; `"absolute"`: input
units, the planer paper's setting), as for SmoothGrad: the offset is attributed as delta / spread through
score(base + spread · delta'), and GradientShap's (input − baseline) × gradient is unchanged by that scaling."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import (
    baseline_forward_passes,
    baseline_of,
    check_baseline,
    check_noise,
    clip_slices,
    global_rng_from,
    noise_spread,
    samples_per_forward,
)


@explainers.register("gradient_shap", summary="Captum GradientShap from zeros or the reference, signed",
                     version=2, needs={"gradients"}, stochastic=True,
                     test_params={"n_samples": 3})
class GradientShapMap(Explainer):
    """Captum's GradientShap has no knob for samples per forward, so the `n_samples` are split into
    chunks that fill `examples_per_forward` and their means are combined, weighted by chunk size."""

    def __init__(self, n_samples: int = 25, stdevs: float = 0.09, baseline: str = "zeros", noise: str = "relative",
                 max_examples_per_forward: int | None = None) -> None:
        super().__init__(max_examples_per_forward)
        self.n_samples, self.stdevs = n_samples, stdevs
        self.noise = check_noise("gradient_shap", noise)
        self.baseline = check_baseline("gradient_shap", baseline)

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        from captum.attr import GradientShap  # lazy: captum costs seconds at import
        method = GradientShap(lambda scaled, clip_base, spread: detector.score(clip_base + scaled * spread))
        per_forward = self.examples_per_forward(batch.x.device)
        base = baseline_of(detector, batch.x, self.baseline)
        # one all-zero baseline for the offset delta = x - base: every clip keeps its own base
        origin = torch.zeros_like(batch.x[:1])
        maps = []
        with global_rng_from(generator, batch.x.device), torch.enable_grad():
            for rows in clip_slices(len(batch), per_forward):
                delta, clip_base = batch.x[rows] - base[rows], base[rows]
                spread = noise_spread(batch.x[rows], self.noise)
                chunk = samples_per_forward(len(delta), per_forward)
                total = torch.zeros_like(delta)
                for start in range(0, self.n_samples, chunk):
                    k = min(chunk, self.n_samples - start)
                    # (delta / spread) x d score / d(delta / spread) = delta x d score / d delta: input units
                    mean_k = method.attribute(delta / spread, baselines=origin, n_samples=k, stdevs=self.stdevs,
                                              additional_forward_args=(clip_base, spread))
                    total += k * mean_k.detach()
                maps.append(total / self.n_samples)
        passes = float(self.n_samples)
        return Explanation(attribution=torch.cat(maps)[:, 0],
                           forward_passes=passes + baseline_forward_passes(self.baseline), backward_passes=passes)
