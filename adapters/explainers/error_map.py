"""Reconstruction error map (x̂ − x)², the planer paper's gradient-free explanation."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation


@explainers.register("error_map", summary="squared reconstruction error (x̂ − x)² per bin", version=1,
                     needs={"reconstruction"})
class ErrorMap(Explainer):
    forward_weight = 1  # forward passes without gradients: the run's whole bound

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        step = self.examples_per_forward(batch.x.device)
        with torch.no_grad():
            err = torch.cat([(detector.reconstruct(x) - x) ** 2 for x in batch.x.split(step)])
        return Explanation(attribution=err[:, 0], forward_passes=1.0)
