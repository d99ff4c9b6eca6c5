"""The explain step of an evaluate cell: the cell's test clips explained once, in batches, and stored.

An explanation is stored as tensors (`explanation.pt`, loaded with `weights_only=True`): the attribution
`[N, F, T]`, the listenable audio, the mask, and every batch-first tensor of `extra`, concatenated over the
batches in clip order. Extras that are not tensors (EnCodec's live codec object) cannot be stored: they are
named in the part's record (`live_only`), and a metric that needs one makes the cell explain again.

Its key hashes the train cell, the explainer's identity, the clip selection and this module's import
closure, but no metric: adding a metric to a suite reuses every stored explanation.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf
import torch

from .cells import EvaluateCell
from .compute import autocast
from .dataset import ClipTable, notice
from .detector import Budget, Detector
from .errors import CellFailure
from .explainer import Explainer
from .registry import registry
from .store import DamagedFile, Store, checkpoint_bytes, read_checkpoint
from .types import Batch, Explanation
from .workspace import Workspace, seed_everything

EXPLANATION_FILE = "explanation.pt"


def select_clips(table: ClipTable, evaluate: dict[str, Any], seed: int) -> torch.Tensor:
    """Row indices of the clips to explain: anomalous (or all labelled) test clips, a seeded subset,
    in table order. The subset does not depend on the detector or explainer, so cells share clips."""
    keep = table.labels == 1 if evaluate["clips"] == "anomalous" else table.labels >= 0
    rows = torch.nonzero(keep).flatten()
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    return rows[order[: evaluate["max_clips"]]].sort().values


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of everything random in the explanation of batch `batch_index` of a cell."""
    return seed * 1_000_003 + batch_index


def check_explanation(expl: Explanation, batch: Batch, name: str) -> None:
    b, _, n_mels, n_frames = batch.x.shape
    if tuple(expl.attribution.shape) != (b, n_mels, n_frames):
        raise CellFailure(f"explainer {name} returned attribution of shape {tuple(expl.attribution.shape)}, "
                          f"want {(b, n_mels, n_frames)}")
    if not torch.isfinite(expl.attribution).all():
        raise CellFailure(f"explainer {name} returned non-finite attribution values")


def prepare_explainer(cell: EvaluateCell, ws: Workspace, detector: Detector,
                      spec) -> tuple[Explainer, dict, dict[str, bytes]]:
    """The cell's explainer bound to the device, trained (or loaded) where it learns; its fit log; and the
    interpreter checkpoint it trained, for the driver to store (an unreadable stored one is trained anew)."""
    explainer = registry("explainer").make(cell.explainer.name, **cell.explainer.params)
    explainer.forward_bound = ws.forward_bound  # before bind: an explainer may size its chunks there
    explainer.bind(spec, ws.device)
    log: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if explainer.trains:
        try:
            state = ws.store.load_checkpoint(cell.interpreter_key, ws.device)
        except DamagedFile as exc:
            notice(f"{exc}: training the interpreter again")
            state = None
        if state is None:
            seed_everything(cell.train.seed)
            train = ws.table(cell.train.dataset, "train")
            with autocast(ws.device, cell.train.precision):
                log = explainer.fit(detector, train.where(train.labels == 0), seed=cell.train.seed,
                                    budget=cell.explainer.budget or Budget())
            files[ws.store.checkpoint_relpath(cell.interpreter_key)] = checkpoint_bytes(
                {"state": explainer.state_dict(), "log": log})
        else:
            explainer.load_state_dict(state["state"])
            log = state.get("log", {})
    return explainer, log, files


@dataclass
class StoredExplanations:
    """The explanations of a cell's clips, stacked in clip order on the CPU."""

    attribution: torch.Tensor
    audio: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    live_only: tuple[str, ...] = ()

    @staticmethod
    def stack(parts: list[Explanation]) -> StoredExplanations:
        """The batches' explanations as one record; extras that are not batch-first tensors become live-only."""
        def cat(values: list) -> torch.Tensor | None:
            return None if values[0] is None else torch.cat([v.detach().float().cpu() for v in values])

        keys = list(parts[0].extra)
        stored, live = {}, []
        for key in keys:
            values = [p.extra.get(key) for p in parts]
            if all(isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == p.attribution.shape[0]
                   for v, p in zip(values, parts, strict=True)):
                stored[key] = torch.cat([v.detach().cpu() for v in values])
            else:
                live.append(key)
        return StoredExplanations(attribution=cat([p.attribution for p in parts]), audio=cat([p.audio for p in parts]),
                                  mask=cat([p.mask for p in parts]), extra=stored, live_only=tuple(live))

    def rows(self, lo: int, hi: int, device: torch.device) -> Explanation:
        """The stored explanation of clips `lo:hi` (one batch) on `device`."""
        take = lambda t: None if t is None else t[lo:hi].to(device)  # noqa: E731
        return Explanation(attribution=take(self.attribution), audio=take(self.audio), mask=take(self.mask),
                           extra={k: take(v) for k, v in self.extra.items()})

    def to_bytes(self) -> bytes:
        return checkpoint_bytes({"attribution": self.attribution, "audio": self.audio, "mask": self.mask,
                                 "extra": self.extra, "live_only": list(self.live_only)})

    @staticmethod
    def load(store: Store, relpath: str, n_clips: int) -> StoredExplanations:
        data = read_checkpoint(store.root / relpath, "cpu")
        attribution = data.get("attribution")
        if not isinstance(attribution, torch.Tensor) or len(attribution) != n_clips:
            raise DamagedFile(f"'{store.root / relpath}' does not hold the explanations of {n_clips} clips")
        return StoredExplanations(attribution=attribution, audio=data.get("audio"), mask=data.get("mask"),
                                  extra=dict(data.get("extra") or {}), live_only=tuple(data.get("live_only") or ()))


def example_files(store: Store, cell: EvaluateCell, batch: Batch, expl: Explanation, sample_rate: int,
                  count: int) -> dict[str, bytes]:
    """A few clips per cell for the gallery: log-mel, attribution and truth (npz), explanation audio (wav), as
    store-relative path -> bytes for the driver to write."""
    t = cell.train
    folder = store.examples_relpath(cell.explain_key, t.dataset.label, t.detector.name,
                                    f"{cell.explainer.name}-s{t.seed}")
    files: dict[str, bytes] = {}
    for i in range(min(count, len(batch))):
        arrays = {"x": batch.x[i, 0].detach().cpu().numpy().astype(np.float16),
                  "attribution": expl.attribution[i].detach().float().cpu().numpy().astype(np.float16)}
        if batch.tf_mask is not None:
            arrays["tf_mask"] = batch.tf_mask[i].cpu().numpy()
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        stem = batch.ids[i].replace("/", "__")
        files[f"{folder}/{stem}.npz"] = buf.getvalue()
        if expl.audio is not None:
            waves = (("input", batch.waveform), ("explanation", expl.audio),
                     ("masked_out", expl.extra.get("audio_masked_out")))
            for tag, wave in waves:
                if wave is None:
                    continue
                w = wave[i].detach().float().cpu().numpy()
                peak = float(np.abs(w).max()) or 1.0
                out = io.BytesIO()
                sf.write(out, w / max(1.0, peak), sample_rate, format="WAV", subtype="PCM_16")
                files[f"{folder}/{stem}.{tag}.wav"] = out.getvalue()
    return files
