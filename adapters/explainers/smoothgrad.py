"""SmoothGrad (Smilkov et al.): saliency averaged over Gaussian-noised copies of the input."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import clip_slices, global_rng_from, samples_per_forward, score_function


@explainers.register("smoothgrad", summary="Captum NoiseTunnel(Saliency): mean |gradient| over noisy copies",
                     version=1, needs={"gradients"}, stochastic=True,
                     defaults={"nt_samples": 25, "stdevs": 0.1, "abs": True},
                     test_params={"nt_samples": 3})
class SmoothGrad(Explainer):
    """`stdevs` is the noise standard deviation in input units (log-mel units of the grid)."""

    def __init__(self, nt_samples: int = 25, stdevs: float = 0.1, abs: bool = True,
                 max_examples_per_forward: int | None = None) -> None:
        super().__init__(max_examples_per_forward)
        self.nt_samples, self.stdevs, self.abs = nt_samples, stdevs, abs

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        from captum.attr import NoiseTunnel, Saliency  # lazy: captum costs seconds at import
        method = NoiseTunnel(Saliency(score_function(detector)))
        per_forward = self.examples_per_forward(batch.x.device)
        maps = []
        with global_rng_from(generator, batch.x.device), torch.enable_grad():
            for rows in clip_slices(len(batch), per_forward):
                x = batch.x[rows]
                maps.append(method.attribute(
                    x, nt_type="smoothgrad", nt_samples=self.nt_samples, stdevs=self.stdevs, abs=self.abs,
                    nt_samples_batch_size=samples_per_forward(len(x), per_forward)).detach())
        passes = float(self.nt_samples)
        return Explanation(attribution=torch.cat(maps)[:, 0], forward_passes=passes, backward_passes=passes)
