"""`--executor dask`: cells on a Dask cluster, a `distributed.LocalCluster` by default or an existing one.

Each cell travels as a picklable description (the cell, the store root, the device, torch threads); a worker
process builds its own `Workspace` over the store once, computes the cell and returns its `Outcome` (rows,
checkpoint and artefact bytes); the driver records outcomes as they arrive and stays the only writer. The
driver renders and caches the suite's data before the first cell. An evaluate cell is submitted as soon as its
train cell is recorded (and, when it shares an interpreter, the codec, one per dataset and seed, the cell that
trains it), so the evaluation of a trained detector runs beside the training of the others; queued cells start
by priority, train cells first, then the longest.

On a CUDA run each cell asks its worker for one `GPU` resource: a local cluster's workers hold one each, an
existing cluster's GPU workers advertise it (`dask worker --resources GPU=1`).

Faults: a worker that dies mid-cell loses that cell, which the scheduler runs once more elsewhere
(`allowed-failures` 1); a second death records the cell as failed and the suite goes on. Ctrl-C cancels
every future and closes the cluster; what the driver wrote is whole (each outcome is written atomically),
so a rerun resumes like the local executor's.

Same tables as `--executor local`: each worker runs one cell at a time (one Dask thread) with `threads`
torch threads. On a CPU the last digits of a result depend on the torch thread count (parallel reductions
split their sums by thread: smoke's `ff` moves in the sixth digit between 1 and 2 threads), so the default is
the count a local run uses (torch's default, the cores), which makes the tables byte-identical to the local
executor's; that oversubscribes the cores when workers x threads > cores, and the driver says so. For speed,
give both executors `--threads 1` (or cores // workers): tables then match across executors at that count.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .dataset import notice
from .errors import BenchmarkError
from .executors import Gate, Prerequisites, cell_kind, cell_runner, guarded
from .outcome import Outcome

GPU = "GPU"  # the worker resource a CUDA cell asks for

# the worker process's workspaces, one per (store root, device, forward bound): datasets and detectors loaded once
_WORKSPACES: dict[tuple[str, str, int | None], Any] = {}


def plugin_modules() -> tuple[str, ...]:
    """The modules that registered the driver's plugins (built-ins, entry points, a user's own module)."""
    from .registry import REGISTRIES
    return tuple(sorted({p.factory.__module__ for r in REGISTRIES.values() for p in r.plugins()}))


def import_plugins(modules: tuple[str, ...]) -> None:
    """In a worker: import the modules that registered the driver's plugins (`plugin_modules`), so plugins the
    driver registered outside the entry points exist here too."""
    import importlib
    for module in modules:
        importlib.import_module(module)


def run_cell_task(kind: str, cell: Any, root: str, device: str, threads: int,
                  modules: tuple[str, ...] = (), forward_bound: int | None = None) -> Outcome:
    """What a worker runs: one cell against the store at `root` (read only), its outcome returned. `modules`
    are imported first, so plugins the driver registered outside the entry points exist here too."""
    import torch

    from .store import Store
    from .workspace import Workspace
    import_plugins(modules)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    ws = _WORKSPACES.get((root, device, forward_bound))
    if ws is None:
        ws = _WORKSPACES[(root, device, forward_bound)] = Workspace(store=Store(root), device=torch.device(device),
                                                                   forward_bound=forward_bound)
    fn = cell_runner(kind)
    return guarded(lambda c: fn(c, ws, None), cell)


def render_split(config: Any, split: str, modules: tuple[str, ...] = ()) -> bytes:
    """What a worker runs while the driver prepares a suite's data: one split of a generated dataset, packed as
    `data_cache.cached_table` stores it, for the driver to write. (Here, not in `data_cache.py`: that module is
    part of every cell's key, and how a split is scheduled does not change what is stored.)"""
    from .data_cache import packed_table
    from .dataset import load_table
    from .registry import registry
    import_plugins(modules)
    dataset = registry("dataset").make(config.name, **config.params)
    return packed_table(load_table(dataset, split))


class DaskExecutor:
    remote = True

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None, threads: int | None = None,
                 gpu: bool = False):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise BenchmarkError("--executor dask needs dask.distributed: pip install -e '.[dist]'") from exc
        if workers is not None and workers < 1:
            raise BenchmarkError(f"--workers {workers}: use a positive number of worker processes")
        self.workers = workers or 2
        import torch
        self.threads = threads or torch.get_num_threads()  # what a local run uses: the same tables
        cores = os.cpu_count() or 1
        if not scheduler and self.workers * self.threads > cores:
            notice(f"--executor dask: {self.workers} workers x {self.threads} torch threads exceed this machine's "
                   f"{cores} cores (the local default, for identical tables); --threads "
                   f"{max(1, cores // self.workers)} runs them without contention, at that count's rounding")
        self._cluster = None
        # a worker that dies running a cell is replaced and the cell tried once more, then it fails; a worker
        # holds one cell at a time (saturation 1), so its death charges no bystander cell queued on it
        dask.config.set({"distributed.scheduler.allowed-failures": 1, "distributed.scheduler.worker-saturation": 1.0,
                         # Dask sets MALLOC_TRIM_THRESHOLD_ in its workers; any explicit glibc malloc tunable turns
                         # off the dynamic mmap threshold, so every tensor above 128 KiB is mmapped and unmapped
                         # again: each cell of a local cluster then took 1.3-1.8x the CPU time of a local run
                         "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
        if scheduler:
            try:
                self.client = Client(scheduler, timeout="30s")
            except OSError as exc:
                raise BenchmarkError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({exc})") from exc
        else:
            # on a GPU run each local worker holds the resource (they share this machine's device)
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.ERROR,
                                         resources={GPU: 1} if gpu else None)
            self.client = Client(self._cluster)
        self.resources = self._cell_resources(gpu)

    def _cell_resources(self, gpu: bool) -> dict[str, int] | None:
        """What each cell asks of a worker: one GPU on a CUDA run. A cluster still scaling up (Slurm jobs
        queued) may have no GPU worker yet: its cells wait for one, and the run says so."""
        if not gpu:
            return None
        workers = self.client.scheduler_info().get("workers", {}).values()
        if not any(GPU in (w.get("resources") or {}) for w in workers):
            notice(f"--executor dask on CUDA: no worker of the cluster advertises a {GPU} resource yet; cells wait "
                   f"for workers started with `dask worker ... --resources {GPU}=1`")
        return {GPU: 1}

    def run(self, cells: Iterable[Any], ws: Any, *, on_start: Callable[[Any], None],
            progress: Callable[[str], None] | None = None, after: Prerequisites | None = None,
            gate: Gate | None = None, priority: Callable[[Any], int] | None = None) -> Iterator[Outcome]:
        """Submit every cell whose prerequisites (`after`) are recorded; each outcome yielded releases the cells
        waiting for it. `priority(cell)`: the scheduler starts queued cells by it, highest first."""
        from distributed import as_completed
        root, device, modules = str(ws.store.root), str(ws.device), plugin_modules()
        cells = list(cells)
        keys = {cell.key for cell in cells}
        futures = as_completed()
        submitted: dict[str, Any] = {}
        unmet: dict[str, set[str]] = {}  # a waiting cell's key -> its prerequisites not yet recorded
        dependents: dict[str, list[Any]] = {}  # a prerequisite's key -> the cells waiting for it
        held: deque[Outcome] = deque()  # outcomes the gate gave in place of running a cell

        def ready(cell: Any) -> None:
            instead = gate(cell) if gate is not None else None
            if instead is not None:
                held.append(instead)
                return
            on_start(cell)
            kind = cell_kind(cell)
            future = self.client.submit(run_cell_task, kind, cell, root, device, self.threads, modules,
                                        ws.forward_bound, key=f"{kind}-{cell.key}", pure=False,
                                        resources=self.resources,
                                        priority=priority(cell) if priority is not None else 0)
            submitted[future.key] = cell
            futures.add(future)

        def recorded(key: str) -> None:
            for cell in dependents.pop(key, []):
                unmet[cell.key].discard(key)
                if not unmet[cell.key]:
                    del unmet[cell.key]
                    ready(cell)

        try:
            for cell in cells:
                before = {k for k in (after(cell) if after is not None else ()) if k in keys}
                if before:
                    unmet[cell.key] = before
                    for key in before:
                        dependents.setdefault(key, []).append(cell)
            for cell in cells:
                if cell.key not in unmet:
                    ready(cell)
            while held or not futures.is_empty():
                if held:
                    outcome = held.popleft()
                else:
                    future = next(futures)
                    cell = submitted.pop(future.key)
                    try:
                        outcome = future.result()
                    except Exception as exc:  # the worker died twice (KilledWorker) or the task could not run
                        outcome = Outcome(cell.key, {**cell.describe(), "status": "failed",
                                                     "reason": f"{type(exc).__name__}: {exc}".strip()}, None)
                    future.release()
                yield outcome  # the driver records it before this generator resumes
                recorded(outcome.key)
            if unmet:  # a prerequisite outside the cells given, or a cycle: a caller's bug, not a cell's failure
                raise RuntimeError(f"cells never became ready: {sorted(unmet)}")
        except BaseException:
            self.client.cancel(list(futures.futures))
            raise

    def map(self, fn: Callable[..., Any], items: list[tuple]) -> Iterator[tuple[tuple, Any]]:
        """(item, `fn(*item, modules)`) for each item, computed on the workers, as each finishes (the driver's
        data preparation: every split rendered in parallel)."""
        from distributed import as_completed
        modules = plugin_modules()
        futures = {self.client.submit(fn, *item, modules, pure=False): item for item in items}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
                future.release()
        except BaseException:
            self.client.cancel(list(futures))
            raise

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
