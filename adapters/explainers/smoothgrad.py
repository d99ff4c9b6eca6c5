"""SmoothGrad (Smilkov et al.): saliency averaged over Gaussian-noised copies of the input.

The noise is `stdevs` times each clip's own spread (the standard deviation of its log-mel grid) by default
(`noise="relative"`): a fixed σ in input units is 0.1 dB on the dB `dcase` grid but 1 dB on the planer's
log10 grid, so SmoothGrad was indistinguishable from saliency on one grid and not the other.
`noise="absolute"` takes `stdevs` in input units (the planer paper's setting, on its log10 grid). The
relative form attributes z = x / spread through score(z · spread) and divides the gradient by the spread
again, so the map is a gradient in input units either way.

The noise is drawn from the cell's generator on the host, one copy after another, and Captum's Saliency takes
the gradients of the noisy copies in forwards of at most `examples_per_forward`: Captum's NoiseTunnel drew it
from the device's generator in shapes set by that bound, so the map depended on the bound and the device."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import check_noise, clip_slices, noise_spread
from ._noise import host_noise


@explainers.register("smoothgrad", summary="Captum Saliency over noisy copies: mean |gradient|",
                     version=3, needs={"gradients"}, stochastic=True,
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
        from captum.attr import Saliency  # lazy: captum costs seconds at import
        method = Saliency(lambda z, spread: detector.score(z * spread))
        spread = noise_spread(batch.x, self.noise)
        z = (batch.x / spread).detach()
        total = torch.zeros_like(z)
        copies = torch.arange(len(z)).repeat_interleave(self.nt_samples)  # the clip of each noisy copy
        with torch.enable_grad():
            for rows in clip_slices(len(copies), self.examples_per_forward(z.device)):
                clips = copies[rows].to(z.device)
                noisy = z[clips] + host_noise(len(clips), z, self.stdevs, generator)
                grads = method.attribute(noisy.requires_grad_(), abs=self.abs, additional_forward_args=(spread[clips],))
                total.index_add_(0, clips, grads.detach())
        passes = float(self.nt_samples)
        # d score / dx = (d score / dz) / spread, averaged over the copies
        return Explanation(attribution=(total / self.nt_samples / spread)[:, 0], forward_passes=passes,
                           backward_passes=passes)
