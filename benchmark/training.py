"""The train cell: fit a detector on a dataset's normal training clips, calibrate it, score the test set."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .cells import TrainCell
from .compute import autocast
from .detector import Budget, batched_scores
from .errors import CellFailure
from .holdout import held_out_split
from .outcome import Outcome
from .registry import registry
from .store import DONE, checkpoint_bytes
from .workspace import Workspace, group_index, seed_everything


def clip_rows(table, rows_idx, *, dataset: str, detector: str, seed: int, explainer: str) -> list[dict[str, Any]]:
    """The identifying columns of each clip's result rows."""
    out = []
    for i in rows_idx:
        m = table.meta[i]
        out.append({"dataset": dataset, "machine": str(m.get("machine", "")), "section": str(m.get("section", "")),
                    "domain": str(m.get("domain", "")), "clip_id": table.ids[i], "label": int(table.labels[i]),
                    "detector": detector, "detector_seed": seed, "explainer": explainer})
    return out


def training_passes(epochs: int, n_fit: int, n_val: int, n_test: int) -> dict[str, int]:
    """Detector passes a train cell runs in all (totals, where an evaluate cell's are per explained clip), counted
    from its loop: every epoch a forward and backward pass of each training clip and a forward pass of each
    validation clip, then the validation clips scored for calibration and the test clips for the detection
    table (a detector that builds a memory bank or a template from the training clips adds about one more
    forward per training clip, not counted here)."""
    return {"passes_forward": epochs * (n_fit + n_val) + n_val + n_test, "passes_backward": epochs * n_fit}


def run_train_cell(cell: TrainCell, ws: Workspace, progress: Callable[[str], None] | None = None):
    t0, c0 = time.monotonic(), time.process_time()
    train = ws.table(cell.dataset, "train")
    test = ws.table(cell.dataset, "test")
    normal = train.where(train.labels == 0)
    if len(normal) < 2:
        raise CellFailure(f"dataset {cell.dataset.label} has {len(normal)} normal training clips; need at least 2")
    groups, classes = group_index(normal.meta)
    seed_everything(cell.seed)
    fit_idx, val_idx = held_out_split(len(normal), cell.seed)
    budget = cell.detector.budget or Budget()
    det = registry("detector").make(cell.detector.name, **cell.detector.params).to(ws.device)
    grid = tuple(normal.x.shape[-2:])
    det.build(grid, len(classes))
    det.to(ws.device)
    det.remember_normals(normal.x[fit_idx].to(ws.device))
    with autocast(ws.device, cell.precision):  # calibration and test scores below stay in float32
        log = det.fit(normal.x[fit_idx], normal.x[val_idx], train_groups=groups[fit_idx],
                      val_groups=groups[val_idx], seed=cell.seed, budget=budget, progress=progress)
    det.eval()
    val_scores = batched_scores(det, normal.x[val_idx], budget.batch_size, ws.device)
    det.calibrate(val_scores.to(ws.device))
    test_scores = batched_scores(det, test.x, budget.batch_size, ws.device)
    if not torch.isfinite(test_scores).all():
        raise CellFailure(f"detector {cell.detector.name} gave non-finite anomaly scores")
    det.set_eer_threshold(test_scores, test.labels)
    checkpoint = checkpoint_bytes({"state": det.state_dict(), "grid": list(grid), "n_groups": len(classes),
                                   "classes": classes, "log": log, "detector": cell.detector.name,
                                   "params": cell.detector.params, "spec": ws.dataset(cell.dataset).spec.to_dict()})
    rows = clip_rows(test, range(len(test)), dataset=cell.dataset.label, detector=cell.detector.name,
                     seed=cell.seed, explainer="-")
    for r, s in zip(rows, test_scores.tolist(), strict=True):
        r.update(metric="anomaly_score", param="", value=float(s), chance=float("nan"))
    record = {**cell.describe(), "status": DONE, "log": log,
              "thresholds": {"tau": float(det.tau), "temperature": float(det.temperature),
                             "eer": float(det.eer_threshold)},
              "cost": {"wall_s": time.monotonic() - t0, "cpu_s": time.process_time() - c0,
                       "epochs": max(1, int(log.get("epochs") or 0)), "n_train": len(fit_idx), "n_test": len(test),
                       **training_passes(int(log.get("epochs") or 0), len(fit_idx), len(val_idx), len(test))}}
    return Outcome(cell.key, record, rows, files={ws.store.checkpoint_relpath(cell.key): checkpoint})
