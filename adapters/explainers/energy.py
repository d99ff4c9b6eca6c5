"""Control: the input's own log-mel energy, shifted so the quietest bin of each clip is zero."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation


@explainers.register("energy", summary="control: the clip's log-mel minus its minimum (larger = louder)",
                     version=1)
class EnergyMap(Explainer):
    """A detector-blind map: an explainer that does no better than this only finds loud bins."""

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        x = batch.x[:, 0]
        return Explanation(attribution=x - x.amin(dim=(1, 2), keepdim=True))
