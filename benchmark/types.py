"""Records that flow between datasets, detectors, explainers and metrics.

Shapes: `F` mel bands, `T` frames, `N` samples, `B` clips in a batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Event:
    """One annotated anomaly: half-open `[onset_s, offset_s)`, an optional band in Hz, a kind."""

    onset_s: float
    offset_s: float
    f_lo_hz: float | None = None
    f_hi_hz: float | None = None
    kind: str = "anomaly"


@dataclass
class Clip:
    """One recording as a dataset yields it.

    waveform: `[N]` float32 mono at `sample_rate`, or None when only `features` exist.
    features: `[F, T]` log-mel on the dataset's grid, or None (computed from the waveform).
    tf_mask: `[F, T]` bool exact time-frequency truth, or None (derived from `events` if any).
    anomaly: `[N]` the anomaly component (synthetic data only): the clip minus its normal twin.
    label: 0 normal, 1 anomalous, None unknown (unlabelled evaluation data).
    meta: machine, section, domain ("source"/"target") and attributes.
    """

    id: str
    split: str
    label: int | None
    sample_rate: int
    waveform: torch.Tensor | None = None
    features: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    tf_mask: torch.Tensor | None = None
    anomaly: torch.Tensor | None = None

    @property
    def intervals(self) -> list[tuple[float, float]]:
        return [(e.onset_s, e.offset_s) for e in self.events]


@dataclass
class Batch:
    """Clips stacked on one device for detectors, explainers and metrics.

    x: `[B, 1, F, T]` log-mel (the canonical input of every detector).
    waveform: `[B, N]` or None (feature-only datasets).
    tf_mask: `[B, F, T]` bool or None; frame_labels: `[B, T]` bool or None.
    anomaly: `[B, N]` true anomaly component or None.
    """

    ids: list[str]
    x: torch.Tensor
    labels: torch.Tensor
    meta: list[dict[str, Any]]
    waveform: torch.Tensor | None = None
    tf_mask: torch.Tensor | None = None
    frame_labels: torch.Tensor | None = None
    anomaly: torch.Tensor | None = None
    has_truth: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(
            ids=self.ids, x=move(self.x), labels=move(self.labels), meta=self.meta,
            waveform=move(self.waveform), tf_mask=move(self.tf_mask),
            frame_labels=move(self.frame_labels), anomaly=move(self.anomaly),
            has_truth=move(self.has_truth),
        )

    def select(self, index: torch.Tensor | slice) -> Batch:
        if isinstance(index, slice):
            rows = list(range(len(self.ids)))[index]
        else:
            rows = index.tolist()
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Batch(
            ids=[self.ids[i] for i in rows], x=pick(self.x), labels=pick(self.labels),
            meta=[self.meta[i] for i in rows], waveform=pick(self.waveform),
            tf_mask=pick(self.tf_mask), frame_labels=pick(self.frame_labels),
            anomaly=pick(self.anomaly), has_truth=pick(self.has_truth),
        )


@dataclass
class Explanation:
    """What an explainer returns for a batch.

    attribution: `[B, F, T]` float on the canonical grid, larger = more responsible for the score.
    audio: `[B, N]` a listenable explanation (time-domain and generative explainers), else None.
    mask: `[B, F, T]` in [0, 1], the explainer's own mask where it has one (L-MAC family), else None.
    forward_passes / backward_passes: detector passes spent, per clip (for the cost table).
    extra: explainer-specific tensors a metric family needs (e.g. the latent and its attribution for the
    synthesis metrics); tensors whose first axis is the batch are selected with the clips.
    """

    attribution: torch.Tensor
    audio: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    forward_passes: float = 0.0
    backward_passes: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def select(self, rows: torch.Tensor) -> Explanation:
        """The explanation of a subset of the batch's clips."""
        b = self.attribution.shape[0]
        pick = lambda t: t[rows] if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == b else t  # noqa: E731
        return Explanation(attribution=self.attribution[rows], audio=pick(self.audio), mask=pick(self.mask),
                           forward_passes=self.forward_passes, backward_passes=self.backward_passes,
                           extra={k: pick(v) for k, v in self.extra.items()})

    def in_float32(self) -> Explanation:
        """The same explanation with every reduced-precision floating tensor (from an autocast forward) in
        float32, so metrics compute in full precision; float32 and float64 tensors are kept as they are."""
        def up(t: Any) -> Any:
            low = isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype in (torch.bfloat16, torch.float16)
            return t.float() if low else t
        return Explanation(attribution=up(self.attribution), audio=up(self.audio), mask=up(self.mask),
                           forward_passes=self.forward_passes, backward_passes=self.backward_passes,
                           extra={k: up(v) for k, v in self.extra.items()})
