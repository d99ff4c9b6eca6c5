"""Integrated Gradients (Sundararajan et al.): gradients integrated from a baseline to the input."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.errors import BenchmarkError
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import baseline_forward_passes, baseline_of, check_baseline, clip_slices, score_function


@explainers.register("integrated_gradients", summary="Captum IntegratedGradients from zeros or the reference, signed",
                     version=1, needs={"gradients"},
                     test_params={"n_steps": 4})
class IntegratedGradientsMap(Explainer):
    """`internal_batch_size` is Captum's name for the examples per forward (it sets
    `max_examples_per_forward`); by default half the run's forward bound (16 on a CPU, 256 on a GPU)."""

    def __init__(self, n_steps: int = 50, method: str = "gausslegendre", baseline: str = "zeros",
                 internal_batch_size: int | None = None, max_examples_per_forward: int | None = None) -> None:
        if internal_batch_size and max_examples_per_forward and internal_batch_size != max_examples_per_forward:
            raise BenchmarkError("integrated_gradients: internal_batch_size and max_examples_per_forward name the "
                                 "same bound; give one of them")
        super().__init__(internal_batch_size or max_examples_per_forward)
        self.n_steps, self.method = n_steps, method
        self.baseline = check_baseline("integrated_gradients", baseline)

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        from captum.attr import IntegratedGradients  # lazy: captum costs seconds at import
        method = IntegratedGradients(score_function(detector))
        per_forward = self.examples_per_forward(batch.x.device)
        base = baseline_of(detector, batch.x, self.baseline)
        with torch.enable_grad():
            maps = [method.attribute(batch.x[rows], baselines=base[rows], n_steps=self.n_steps, method=self.method,
                                     internal_batch_size=per_forward).detach()
                    for rows in clip_slices(len(batch), per_forward)]
        return Explanation(attribution=torch.cat(maps)[:, 0],
                           forward_passes=self.n_steps + baseline_forward_passes(self.baseline),
                           backward_passes=float(self.n_steps))
