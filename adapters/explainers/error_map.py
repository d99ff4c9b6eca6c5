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
    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        with torch.no_grad():
            err = (detector.reconstruct(batch.x) - batch.x) ** 2
        return Explanation(attribution=err[:, 0], forward_passes=1.0)
