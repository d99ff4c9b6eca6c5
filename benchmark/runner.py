"""The driver: expand a suite into cells, run the unfinished ones, record every outcome, publish."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .cells import EvaluateCell, expand, inapplicable
from .dataset import notice
from .evaluation import dataset_provides, run_evaluate_cell
from .executors import Executor, Outcome, guarded
from .store import DONE, FAILED, SKIPPED, Store
from .suites import Suite
from .training import run_train_cell
from .workspace import Workspace


@dataclass
class RunSummary:
    done: int = 0
    cached: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def run_suite(suite: Suite, *, out: Path, device: torch.device, executor: Executor,
              show_progress: bool = True) -> RunSummary:
    store = Store(out)
    trains, evals = expand(suite)
    store.record_suite(suite.name, {"suite": suite.name, "suite_file": str(suite.path),
                                    "suite_hash": suite.file_hash(), "seeds": list(suite.seeds),
                                    "device": str(device),
                                    "train": [c.key for c in trains], "evaluate": [c.key for c in evals]})
    ws = Workspace(store=store, device=device)
    summary = RunSummary()
    bar = tqdm(total=len(trains) + len(evals), desc=f"{suite.name} cells", unit="cell", file=sys.stderr,
               disable=not show_progress, dynamic_ncols=True)
    inner = _InnerProgress(show_progress)

    def record(outcome: Outcome) -> None:
        for part in outcome.parts:
            store.finish(part.key, part.record, part.rows, part.files, part.uses)
        store.finish(outcome.key, outcome.record, outcome.rows, outcome.files, outcome.uses)
        status = outcome.record["status"]
        if status == DONE:
            summary.done += 1
        elif status == SKIPPED:
            summary.skipped.append(f"{outcome.record['label']}: {outcome.record['reason']}")
        else:
            summary.failed.append(f"{outcome.record['label']}: {outcome.record.get('reason', 'failed')}")
        bar.update(1)

    todo_train = _unfinished(store, trains, summary, bar)
    for outcome in executor.map(lambda c: guarded(lambda cell: run_train_cell(cell, ws, inner.update), c),
                                inner.track(todo_train)):
        record(outcome)

    retrained = {c.key for c in todo_train}
    runnable: list[EvaluateCell] = []
    for cell in _unfinished(store, evals, summary, bar, redo=lambda c: c.train.key in retrained):
        reason = _why_not(cell, store, ws)
        if reason is None:
            runnable.append(cell)
            continue
        status = SKIPPED if not reason.startswith("detector training failed") else FAILED
        record(Outcome(cell.key, {**cell.describe(), "status": status, "reason": reason}, None))
    for outcome in executor.map(lambda c: guarded(lambda cell: run_evaluate_cell(cell, ws, inner.update), c),
                                inner.track(runnable)):
        record(outcome)
    bar.close()
    inner.close()
    return summary


def _unfinished(store: Store, cells: list, summary: RunSummary, bar: tqdm, redo=lambda cell: False) -> list:
    """Cells to compute: no verified finished record, or `redo(cell)` (a detector trained anew). A finished
    cell whose files no longer verify is recomputed with a one-line notice."""
    todo = []
    for cell in cells:
        st = store.status(cell.key)
        finished = st is not None and st["status"] in (DONE, SKIPPED)
        problem = store.problem(cell.key) if finished else None
        if problem is not None:
            notice(f"cell {cell.label} ({cell.key[:10]}) is damaged ({problem}): computing it again")
        if finished and problem is None and not (st["status"] == DONE and redo(cell)):
            summary.cached += 1
            if st["status"] == SKIPPED:
                summary.skipped.append(f"{st['label']}: {st['reason']}")
            bar.update(1)
        else:
            todo.append(cell)
    return todo


def _why_not(cell: EvaluateCell, store: Store, ws: Workspace) -> str | None:
    train_status = store.status(cell.train.key)
    if train_status is None or train_status["status"] != DONE:
        reason = (train_status or {}).get("reason", "not run")
        return f"detector training failed ({reason})"
    dataset = ws.dataset(cell.train.dataset)
    return inapplicable(cell.explainer, cell.train.detector, dataset_provides(dataset))


class _InnerProgress:
    """One bar inside long cells (training epochs, explanation batches)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.t0 = time.monotonic()

    def track(self, cells: list[Any]):
        for cell in cells:
            if self.enabled:
                self.close()
                self.bar = tqdm(desc=cell.label, file=sys.stderr, leave=False, bar_format="{desc}: {postfix}",
                                dynamic_ncols=True)
            yield cell

    def update(self, message: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
