"""SmoothGrad (Smilkov et al.): saliency averaged over Gaussian-noised copies of the input.

The noise is `stdevs` times each clip's own spread (the standard deviation of its log-mel grid) by default
(`noise="relative"`): a fixed σ in input units is 0.1 dB on the dB `dcase` grid but 1 dB on the planer's
log10 grid, so SmoothGrad was indistinguishable from saliency on one grid and not the other.
`noise="absolute"` takes `stdevs` in input units (the planer paper's setting, on its log10 grid). The
relative form attributes z = x / spread through score(z · spread) and divides the gradient by the spread
again, so the map is a gradient in input units either way."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import check_noise, clip_slices, global_rng_from, noise_spread, samples_per_forward


@explainers.register("smoothgrad", summary="Captum NoiseTunnel(Saliency): mean |gradient| over noisy copies",
                     version=2, needs={"gradients"}, stochastic=True,
                     test_params={"nt_samples": 3})
class SmoothGrad(Explainer):
    """`stdevs`: the noise standard deviation, relative to each clip's spread (`noise="relative"`) or in
    input units (`noise="absolute"`)."""

    def __init__(self, nt_samples: int = 25, stdevs: float = 0.1, abs: bool = True, noise: str = "relative",
                 max_examples_per_forward: int | None = None) -> None:
        super().__init__(max_examples_per_forward)
        self.nt_samples, self.stdevs, self.abs = nt_samples, stdevs, abs
        self.noise = check_noise("smoothgrad", noise)

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        from captum.attr import NoiseTunnel, Saliency  # lazy: captum costs seconds at import
        method = NoiseTunnel(Saliency(lambda z, spread: detector.score(z * spread)))
        per_forward = self.examples_per_forward(batch.x.device)
        maps = []
        with global_rng_from(generator, batch.x.device), torch.enable_grad():
            for rows in clip_slices(len(batch), per_forward):
                x = batch.x[rows]
                spread = noise_spread(x, self.noise)
                grad_z = method.attribute(
                    x / spread, nt_type="smoothgrad", nt_samples=self.nt_samples, stdevs=self.stdevs, abs=self.abs,
                    nt_samples_batch_size=samples_per_forward(len(x), per_forward), additional_forward_args=(spread,))
                maps.append((grad_z / spread).detach())  # d score / dx = (d score / dz) / spread
        passes = float(self.nt_samples)
        return Explanation(attribution=torch.cat(maps)[:, 0], forward_passes=passes, backward_passes=passes)
