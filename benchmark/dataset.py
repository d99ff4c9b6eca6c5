"""Dataset protocol and `ClipTable`, the stacked form of one split that cells work on."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .errors import BenchmarkError
from .features import FeatureSpec, LogMel, frame_labels_from_intervals, mask_from_events
from .types import Batch, Clip

SPLITS = ("train", "test")


class Dataset:
    """A dataset adapter yields `Clip` records per split on one `FeatureSpec` grid.

    Subclasses set `spec` and implement `clips(split)`. `truth` names the ground truth it carries:
    "intervals" (event times), "tf_mask" (time-frequency masks), "audio" (the anomaly waveform).
    `has_waveforms` is False for feature-only data (waveform explainers are then skipped).
    """

    spec: FeatureSpec
    truth: frozenset[str] = frozenset()
    has_waveforms: bool = True

    def clips(self, split: str) -> Iterator[Clip]:
        raise NotImplementedError

    @staticmethod
    def check_split(split: str) -> None:
        """Raise the one-line error for a split that is not one of `SPLITS`."""
        if split not in SPLITS:
            raise BenchmarkError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")

    def counts(self) -> dict[str, int] | None:
        """Clips per split ("train", "test", "test_anomalous") when known without reading audio, else None."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "truth": sorted(self.truth), "waveforms": self.has_waveforms}


def notice(message: str) -> None:
    """A one-line notice for the user (resampling, downmixing, unlabelled files)."""
    print(f"notice: {message}", file=sys.stderr)


def fit_length(t: torch.Tensor, n: int) -> torch.Tensor:
    """Crop or zero-pad the last axis to `n`."""
    if t.shape[-1] >= n:
        return t[..., :n]
    return torch.nn.functional.pad(t, (0, n - t.shape[-1]))


@dataclass
class ClipTable:
    """One split of a dataset, stacked on the CPU.

    x: `[N, 1, F, T]` log-mel; waveform `[N, S]` or None; tf_mask `[N, F, T]` bool or None;
    frame_labels `[N, T]` bool or None; anomaly `[N, S]` or None; labels `[N]` (-1 = unknown);
    has_truth `[N]` bool: the clip carries time (and, with tf_mask, time-frequency) ground truth.
    """

    ids: list[str]
    x: torch.Tensor
    labels: torch.Tensor
    meta: list[dict[str, Any]]
    waveform: torch.Tensor | None
    tf_mask: torch.Tensor | None
    frame_labels: torch.Tensor | None
    anomaly: torch.Tensor | None
    has_truth: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, rows: list[int] | torch.Tensor) -> Batch:
        rows = torch.as_tensor(rows, dtype=torch.long)
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Batch(
            ids=[self.ids[i] for i in rows.tolist()], x=self.x[rows], labels=self.labels[rows],
            meta=[self.meta[i] for i in rows.tolist()], waveform=pick(self.waveform),
            tf_mask=pick(self.tf_mask), frame_labels=pick(self.frame_labels),
            anomaly=pick(self.anomaly), has_truth=self.has_truth[rows],
        )

    def where(self, keep: torch.Tensor) -> ClipTable:
        rows = torch.nonzero(keep).flatten()
        b = self.batch(rows)
        return ClipTable(b.ids, b.x, b.labels, b.meta, b.waveform, b.tf_mask, b.frame_labels,
                         b.anomaly, b.has_truth)


def load_table(dataset: Dataset, split: str, *, keep_waveforms: bool = True) -> ClipTable:
    """Stack a split: log-mel from features or waveforms (cropped/padded to the spec's duration)."""
    spec = dataset.spec
    logmel = LogMel(spec)
    n_samples, n_frames = spec.n_samples, spec.n_frames
    ids, xs, labels, meta, waves, masks, frames, anomalies, truth = [], [], [], [], [], [], [], [], []
    any_mask = "tf_mask" in dataset.truth or "intervals" in dataset.truth
    for clip in dataset.clips(split):
        if clip.features is not None:
            x = fit_length(clip.features.float(), n_frames)
        else:
            w = fit_length(clip.waveform.float(), n_samples)
            with torch.no_grad():
                x = logmel(w[None])[0, 0]
        ids.append(clip.id)
        xs.append(x)
        labels.append(-1 if clip.label is None else int(clip.label))
        meta.append(dict(clip.meta))
        if clip.waveform is not None and keep_waveforms:
            waves.append(fit_length(clip.waveform.float(), n_samples))
        if clip.anomaly is not None:
            anomalies.append(fit_length(clip.anomaly.float(), n_samples))
        elif clip.waveform is not None and keep_waveforms:
            anomalies.append(torch.zeros(n_samples))
        if clip.tf_mask is not None:
            masks.append(fit_length(clip.tf_mask.bool(), n_frames))
        else:
            masks.append(mask_from_events(clip.events, spec, n_frames))
        frames.append(frame_labels_from_intervals(clip.intervals, spec, n_frames))
        truth.append(clip.label == 1 and bool(clip.events))
    if not ids:
        return ClipTable([], torch.zeros(0, 1, *spec.grid), torch.zeros(0, dtype=torch.long), [],
                         None, None, None, None, torch.zeros(0, dtype=torch.bool))
    return ClipTable(
        ids=ids, x=torch.stack(xs)[:, None], labels=torch.tensor(labels), meta=meta,
        waveform=torch.stack(waves) if len(waves) == len(ids) else None,
        tf_mask=torch.stack(masks) if any_mask else None,
        frame_labels=torch.stack(frames) if any_mask else None,
        anomaly=torch.stack(anomalies) if "audio" in dataset.truth and len(anomalies) == len(ids) else None,
        has_truth=torch.tensor(truth, dtype=torch.bool),
    )
