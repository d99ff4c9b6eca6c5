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
class MetricContext:
    """One batch on the cell's device.

    batch: the clips (x `[B, 1, F, T]`, tf_mask, frame_labels, waveform, anomaly ...).
    explanation: the explainer's output for exactly these clips.
    scores: `[B]` the detector's anomaly scores of batch.x (no gradient).
    explain: re-runs the cell's explainer on another detector (sanity checks) -> Explanation.
    generator: seeded for anything random a metric draws.
    """

    batch: Batch
    explanation: Explanation
    detector: Detector
    spec: FeatureSpec
    scores: torch.Tensor
    explain: Callable[[Detector, Batch], Explanation]
    generator: torch.Generator
    percentiles: tuple[int, ...] = PERCENTILES


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
