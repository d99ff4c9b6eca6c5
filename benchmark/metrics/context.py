"""What a registered metric sees for one batch of explained clips, and what it returns."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..detector import Detector
from ..features import FeatureSpec
from ..types import Batch, Explanation

PERCENTILES = tuple(range(90, 100))


@dataclass
class PassMemo:
    """What the metrics of one context share: computed values by key, and the detector passes per clip spent
    since the last metric took its result (`forward`, `backward`)."""

    values: dict = field(default_factory=dict)
    forward: float = 0.0
    backward: float = 0.0


@dataclass
class MetricContext:
    """One batch on the cell's device, created by the evaluation loop once per batch.

    batch: the clips (x `[B, 1, F, T]`, tf_mask, frame_labels, waveform, anomaly ...).
    explanation: the explainer's output for exactly these clips.
    scores: `[B]` the detector's anomaly scores of batch.x (no gradient).
    explain: re-runs the cell's explainer on another detector (sanity checks) -> Explanation.
    generator: seeded for anything random a metric draws (the loop gives every metric a fresh one of the
    same seed, so a value does not depend on which metrics ran before it).
    memo: detector passes shared by the metrics of this context (`metrics._passes`); `subset` contexts
    (truth-only clips, a metric's clip budget) have their own, kept for the whole batch.
    forward_bound: the run's bound on inputs per detector forward (`benchmark.compute`; None: the device's).
    """

    batch: Batch
    explanation: Explanation
    detector: Detector
    spec: FeatureSpec
    scores: torch.Tensor
    explain: Callable[[Detector, Batch], Explanation]
    generator: torch.Generator
    percentiles: tuple[int, ...] = PERCENTILES
    forward_bound: int | None = None
    memo: PassMemo = field(default_factory=PassMemo)
    _subsets: dict = field(default_factory=dict, repr=False)

    def subset(self, rows: torch.Tensor) -> MetricContext:
        """The context of some of the batch's clips (`rows` `[K]` long), made once per batch and rows."""
        key = tuple(rows.tolist())
        if key == tuple(range(len(self.batch))):
            return self
        if key not in self._subsets:
            self._subsets[key] = MetricContext(
                batch=self.batch.select(rows), explanation=self.explanation.select(rows.to(self.scores.device)),
                detector=self.detector, spec=self.spec, scores=self.scores[rows.to(self.scores.device)],
                explain=self.explain, generator=self.generator, percentiles=self.percentiles,
                forward_bound=self.forward_bound)
        return self._subsets[key]


@dataclass
class MetricResult:
    """Per-clip values `[B]` by parameter label ("" when the metric has no parameter, e.g. "95" for a
    percentile), the chance level where defined (`[B]`, or `[B]` by parameter label when it moves with
    the parameter), and the detector passes spent per clip."""

    values: dict[str, torch.Tensor]
    chance: torch.Tensor | dict[str, torch.Tensor] | None = None
    forward_passes: float = 0.0
    backward_passes: float = 0.0
    extra: dict = field(default_factory=dict)
