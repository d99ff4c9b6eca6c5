"""The explainer protocol: one verb, `explain(detector, batch) -> Explanation`.

The attributed scalar is the detector's anomaly score. Attributions are `[B, F, T]` on the
canonical grid, larger = more responsible for the score. Explainers that learn (trained
interpreters, codecs) override `fit`, which the engine calls once per (dataset, detector, seed) and
whose state is cached by the cell key through `state_dict`/`load_state_dict`.
"""
from __future__ import annotations

from typing import Any

import torch

from .compute import examples_per_forward
from .dataset import ClipTable
from .detector import Budget, Detector
from .features import FeatureSpec
from .types import Batch, Explanation


class Explainer:
    """Base class; `max_examples_per_forward` bounds memory (inputs per forward) for this explainer alone,
    otherwise it takes its `forward_weight` share of the run's bound (`benchmark.compute`)."""

    trains: bool = False
    # False for an interpreter whose training never looks at the detector (a codec learnt from the normal
    # clips alone): it is then trained once per dataset and seed and shared by every detector
    fit_uses_detector: bool = True
    # the memory of one input relative to a detector pass without gradients: a backward keeps activations
    forward_weight: int = 2
    forward_bound: int | None = None  # the run's bound, set by the engine (None: the device default)

    def __init__(self, max_examples_per_forward: int | None = None) -> None:
        self.max_examples_per_forward = max_examples_per_forward
        self.spec: FeatureSpec | None = None

    def bind(self, spec: FeatureSpec, device: torch.device) -> None:
        """Called by the engine before use: the dataset's grid and the device to work on."""
        self.spec = spec
        self.device = device

    def examples_per_forward(self, device: torch.device) -> int:
        """How many inputs one forward may hold: this explainer's own bound, else its share of the run's."""
        if self.max_examples_per_forward:
            return self.max_examples_per_forward
        return examples_per_forward(device, self.forward_bound, self.forward_weight)

    def fit(self, detector: Detector, train: ClipTable, *, seed: int, budget: Budget) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        raise NotImplementedError
