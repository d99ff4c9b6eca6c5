"""The driver: expand a suite into cells, run the unfinished ones, record every outcome, publish."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .cells import EvaluateCell, expand, inapplicable
from .dataset import notice
from .executors import Executor
from .needs import dataset_provides
from .outcome import Outcome
from .progress import RunProgress
from .provenance import run_plugins
from .statistics import metric_specs
from .store import DONE, FAILED, SKIPPED, Store
from .suite_types import Suite
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
              progress: str = "off", weights: dict[str, float] | None = None,
              forward_bound: int | None = None) -> RunSummary:
    """Run `suite`'s unfinished cells into the store at `out`. `progress`: "bars" (a terminal), "lines" (one
    line per cell, for logs) or "off"; `weights`: each cell's estimated seconds, for a cost-weighted ETA;
    `forward_bound`: inputs per forward pass (`benchmark.compute`; None: the device's default)."""
    store = Store(out)
    trains, evals = expand(suite)
    # the facts a publish reads (plugin identities, metric specs) are taken now, with the cell keys: the plugins
    # installed when it publishes may have changed since
    store.record_suite(suite.name, {"suite": suite.name, "suite_file": str(suite.path),
                                    "suite_hash": suite.file_hash(), "seeds": list(suite.seeds),
                                    "explain_seeds": [s for s in suite.seeds if suite.explained(s)],
                                    "device": str(device), "torch_threads": torch.get_num_threads(),
                                    "precision": suite.precision, "examples_per_forward": forward_bound,
                                    "train": [c.key for c in trains], "evaluate": [c.key for c in evals],
                                    "plugins": run_plugins(suite),
                                    "metric_specs": metric_specs([m.name for m in suite.metrics])})
    ws = Workspace(store=store, device=device, forward_bound=forward_bound)
    summary = RunSummary()
    report = RunProgress(suite.name, len(trains) + len(evals), weights or {}, progress)
    computed: set[str] = set()

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
        report.finish(outcome.key, outcome.record["label"], status, computed=outcome.key in computed,
                      took_s=outcome.record.get("cost", {}).get("wall_s", outcome.record.get("failed_after_s")))

    def started(cell) -> None:
        computed.add(cell.key)
        if not executor.remote:  # a cluster's cells start elsewhere: the ETA counts the time between outcomes
            report.start(cell)

    try:
        todo_train = _unfinished(store, trains, summary, report)
        retrained = {c.key for c in todo_train}
        todo_eval = []
        for cell in _unfinished(store, evals, summary, report, redo=lambda c: c.train.key in retrained):
            reason = _inapplicable(cell, ws)
            if reason is None:
                todo_eval.append(cell)
            else:  # whatever its detector's training gives: recorded now
                record(Outcome(cell.key, {**cell.describe(), "status": SKIPPED, "reason": reason}, None))
        # the ETA waits for these; an evaluate cell whose detector's training fails is taken off again
        report.plan(todo_train)
        report.plan(todo_eval)
        if executor.remote:  # workers only read the store: the driver renders and caches the data first
            _prepare_data(ws, suite, executor)
            # a pool packs best when the longest cells start first (outcomes do not depend on the order)
            todo_train, todo_eval = longest_first(todo_train, report.weight), longest_first(todo_eval, report.weight)
        shares = _shared_interpreter(todo_eval)

        def after(cell) -> tuple[str, ...]:
            """An evaluate cell waits for its train cell and for the cell that trains an interpreter it shares."""
            if not isinstance(cell, EvaluateCell):
                return ()
            first = shares(cell)
            return (cell.train.key, first) if first else (cell.train.key,)

        def gate(cell) -> Outcome | None:
            """Once its train cell is recorded: an evaluate cell of a detector whose training failed, recorded as
            failed instead of running."""
            if not isinstance(cell, EvaluateCell):
                return None
            train = store.status(cell.train.key)
            if train is not None and train["status"] == DONE:
                return None
            report.unplan([cell.key])
            reason = f"detector training failed ({(train or {}).get('reason', 'not run')})"
            return Outcome(cell.key, {**cell.describe(), "status": FAILED, "reason": reason}, None)

        def priority(cell) -> int:
            """Train cells first (evaluate cells wait for them), then the longest."""
            return int(report.weight(cell.key)) + (10 ** 9 if not isinstance(cell, EvaluateCell) else 0)

        for outcome in executor.run([*todo_train, *todo_eval], ws, on_start=started, progress=report.update,
                                    after=after, gate=gate, priority=priority):
            record(outcome)
    finally:
        report.close()
    return summary


def longest_first(cells: list, weight) -> list:
    """`cells` by estimated cost, the longest first (ties in suite order): on a pool of workers a long cell
    started last leaves the others idle while it runs. Outcomes do not depend on the order."""
    return sorted(cells, key=lambda cell: -weight(cell.key))


def _prepare_data(ws: Workspace, suite: Suite, executor: Executor) -> None:
    """Render and cache every split of the suite's generated datasets, so workers find them in the store
    (a dataset read from disk is read by each worker itself). Splits not yet stored are rendered in parallel
    on the executor's workers when it has a `map`, and written here."""
    from .dask_executor import render_split
    from .data_cache import cache_relpath
    from .variants import generation_config
    stored, missing = [], []
    for config in suite.datasets:
        # a variant is derived from its base dataset's tables in each process (filtering is cheap, rendering
        # not); a difficulty sweep's is a generation of its own
        config = generation_config(config)
        if not config.variant and getattr(ws.dataset(config), "generated", False):
            for split in ("train", "test"):
                done = (ws.store.root / cache_relpath(config, split)).is_file()
                (stored if done else missing).append((config, split))
    mapper = getattr(executor, "map", None)
    if mapper is not None and len(missing) > 1:
        for (config, split), blob in mapper(render_split, missing):
            ws.store.write(cache_relpath(config, split), blob)
    else:
        stored += missing
    for config, split in stored:  # read (or rendered) here: a damaged file is generated again by the writer
        ws.table(config, split)


def _shared_interpreter(cells: list[EvaluateCell]):
    """`after(cell)`: the key of the earlier cell that trains the interpreter this cell shares (the codec is
    one per dataset and seed), or None; run in parallel, both would train it."""
    first: dict[str, str] = {}
    wait: dict[str, str] = {}
    for cell in cells:
        if not cell.explainer.plugin.factory.trains:
            continue
        if cell.interpreter_key in first:
            wait[cell.key] = first[cell.interpreter_key]
        else:
            first[cell.interpreter_key] = cell.key
    return lambda cell: wait.get(cell.key)


def _unfinished(store: Store, cells: list, summary: RunSummary, report: RunProgress,
                redo=lambda cell: False) -> list:
    """Cells to compute: no verified finished record, or `redo(cell)` (a detector trained anew). A finished
    cell whose files no longer verify is recomputed with a one-line notice."""
    todo = []
    cached = 0
    for cell in cells:
        st = store.status(cell.key)
        finished = st is not None and st["status"] in (DONE, SKIPPED)
        problem = store.problem(cell.key) if finished else None
        if problem is not None:
            notice(f"cell {cell.label} ({cell.key[:10]}) is damaged ({problem}): computing it again")
        if finished and problem is None and not (st["status"] == DONE and redo(cell)):
            summary.cached += 1
            cached += 1
            if st["status"] == SKIPPED:
                summary.skipped.append(f"{st['label']}: {st['reason']}")
        else:
            todo.append(cell)
    if cached:
        report.cached(cached)
    return todo


def _inapplicable(cell: EvaluateCell, ws: Workspace) -> str | None:
    """Why the cell's explainer cannot run on its detector and dataset (a need unmet), or None."""
    dataset = ws.dataset(cell.train.dataset)
    return inapplicable(cell.explainer, cell.train.detector, dataset_provides(dataset))
