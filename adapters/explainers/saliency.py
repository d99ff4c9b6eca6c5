"""Saliency (Simonyan et al.): the gradient of the anomaly score with respect to each log-mel bin."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import clip_slices, score_function


@explainers.register("saliency", summary="Captum Saliency: |d score / d x| per bin", version=1,
                     needs={"gradients"})
class SaliencyMap(Explainer):
    """`abs=True` (the planer paper) keeps the gradient magnitude; `abs=False` the signed gradient."""

    def __init__(self, abs: bool = True, max_examples_per_forward: int | None = None) -> None:
        super().__init__(max_examples_per_forward)
        self.abs = abs

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        from captum.attr import Saliency  # lazy: captum costs seconds at import
        method = Saliency(score_function(detector))
        per_forward = self.examples_per_forward(batch.x.device)
        with torch.enable_grad():
            maps = [method.attribute(batch.x[rows].detach().requires_grad_(), abs=self.abs).detach()
                    for rows in clip_slices(len(batch), per_forward)]
        return Explanation(attribution=torch.cat(maps)[:, 0], forward_passes=1.0, backward_passes=1.0)
