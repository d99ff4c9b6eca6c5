"""Executors run cells and hand each outcome back to the driver, which alone writes the store.

`LocalExecutor` runs cells in this process, in order. `DaskExecutor` (`dask_executor.py`) implements the
same `run`: it ships the same picklable cell objects to workers and returns the same outcomes, so cells,
keys and the store do not change with the executor. `run` yields each outcome as it finishes; the driver
records it before asking for the next, so a cell that `after(cell)` names a prerequisite for (a shared
interpreter's first cell) starts only once that prerequisite's files are in the store.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from .errors import BenchmarkError
from .outcome import Outcome


class Executor(Protocol):
    remote: bool  # cells run in other processes: the driver prepares the data they read

    def run(self, kind: str, cells: Iterable[Any], ws: Any, *, on_start: Callable[[Any], None],
            progress: Callable[[str], None] | None = None,
            after: Callable[[Any], str | None] | None = None) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


def cell_runner(kind: str) -> Callable[..., Outcome]:
    """The function that computes a cell of `kind` ("train" or "evaluate"): `fn(cell, ws, progress)`."""
    if kind == "train":
        from .training import run_train_cell
        return run_train_cell
    if kind == "evaluate":
        from .evaluation import run_evaluate_cell
        return run_evaluate_cell
    raise ValueError(f"unknown cell kind {kind!r}")


class LocalExecutor:
    remote = False

    def run(self, kind: str, cells: Iterable[Any], ws: Any, *, on_start: Callable[[Any], None],
            progress: Callable[[str], None] | None = None,
            after: Callable[[Any], str | None] | None = None) -> Iterator[Outcome]:
        fn = cell_runner(kind)
        for cell in cells:  # in order: every prerequisite has run before the cells that wait for it
            on_start(cell)
            yield guarded(lambda c: fn(c, ws, progress), cell)

    def close(self) -> None:
        pass


def guarded(run: Callable[[Any], Outcome], cell: Any) -> Outcome:
    """Run a cell; any exception (a plugin's `SystemExit` too, anything but Ctrl-C) becomes that cell's recorded
    failure and the suite goes on."""
    try:
        return run(cell)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        detail = traceback.format_exc(limit=6)
        return Outcome(cell.key, {**cell.describe(), "status": "failed", "reason": reason, "traceback": detail},
                       None)


def make_executor(name: str, *, workers: int | None = None, scheduler: str | None = None,
                  threads: int | None = None, gpu: bool = False) -> Executor:
    """`gpu`: cells run on a CUDA device, so a Dask cluster places each on a worker holding a GPU."""
    if name == "local":
        if workers is not None or scheduler:
            raise BenchmarkError("--workers and --scheduler are options of --executor dask; add --executor dask")
        return LocalExecutor()
    if name == "dask":
        from .dask_executor import DaskExecutor
        return DaskExecutor(workers=workers, scheduler=scheduler, threads=threads, gpu=gpu)
    raise BenchmarkError(f"unknown executor {name!r}; use local or dask")
