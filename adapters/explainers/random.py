"""Control: a random map, independent of detector and input (localisation metrics sit at chance)."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation


@explainers.register("random", summary="control: i.i.d. uniform map from the cell's seeded generator",
                     version=1, stochastic=True)
class RandomMap(Explainer):
    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        b, _, n_mels, n_frames = batch.x.shape
        noise = torch.rand(b, n_mels, n_frames, generator=generator)
        return Explanation(attribution=noise.to(batch.x.device))
