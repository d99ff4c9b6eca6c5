"""GradientSHAP (Lundberg & Lee): expected gradients × (input − baseline) at random points between
a noised input and the baseline.

The input noise is `stdevs` times each clip's spread by default (`noise="relative"`; `"absolute"`: input
units, the planer paper's setting), as for SmoothGrad: the offset is attributed as delta / spread through
score(base + spread · delta'), and GradientShap's (input − baseline) × gradient is unchanged by that scaling.

Each of the `n_samples` copies of a clip is Captum's GradientShap step with one baseline (zeros in the offset):
noise ε ~ N(0, stdevs²) on the scaled offset d, a point r ~ U(0, 1), the gradient at r · (d + ε) (Captum's
Saliency) times (d + ε); the map is their mean. ε and r are drawn from the cell's generator on the host, one copy
after another (`_noise.py`): Captum's GradientShap drew them from the device's torch and numpy generators in
shapes set by the forward bound, so the map depended on the bound and the device."""
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
    noise_spread,
)
from ._noise import host_generator, host_noise, host_points


@explainers.register("gradient_shap", summary="GradientSHAP (Captum gradients) from zeros or the reference, signed",
                     version=3, needs={"gradients"}, stochastic=True,
                     test_params={"n_samples": 3})
class GradientShapMap(Explainer):
    """The copies of all clips go through forwards of at most `examples_per_forward`."""

    def __init__(self, n_samples: int = 25, stdevs: float = 0.09, baseline: str = "zeros", noise: str = "relative",
                 max_examples_per_forward: int | None = None) -> None:
        super().__init__(max_examples_per_forward)
        self.n_samples, self.stdevs = n_samples, stdevs
        self.noise = check_noise("gradient_shap", noise)
        self.baseline = check_baseline("gradient_shap", baseline)

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        from captum.attr import Saliency  # lazy: captum costs seconds at import
        method = Saliency(lambda scaled, clip_base, spread: detector.score(clip_base + scaled * spread))
        base = baseline_of(detector, batch.x, self.baseline).detach()
        spread = noise_spread(batch.x, self.noise)
        offset = ((batch.x - base) / spread).detach()  # d = (x - base) / spread; its baseline is zero
        points = host_generator(generator)
        total = torch.zeros_like(offset)
        copies = torch.arange(len(offset)).repeat_interleave(self.n_samples)  # the clip of each copy
        with torch.enable_grad():
            for rows in clip_slices(len(copies), self.examples_per_forward(offset.device)):
                clips = copies[rows].to(offset.device)
                noisy = offset[clips] + host_noise(len(clips), offset, self.stdevs, generator)
                r = host_points(len(clips), offset, points).reshape(-1, *[1] * (offset.dim() - 1))
                grads = method.attribute((r * noisy).requires_grad_(), abs=False,
                                         additional_forward_args=(base[clips], spread[clips]))
                # (d + ε) × d score / d(d): input units, as (x − base) × d score / dx
                total.index_add_(0, clips, (noisy * grads).detach())
        passes = float(self.n_samples)
        return Explanation(attribution=(total / self.n_samples)[:, 0],
                           forward_passes=passes + baseline_forward_passes(self.baseline), backward_passes=passes)
