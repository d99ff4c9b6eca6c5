"""Executors run cells and hand each outcome back to the driver, which alone writes the store.

`run` takes the run's cells, train cells before the evaluate cells that need them, and yields each outcome as it
finishes; the driver records it before asking for the next. `after(cell)` names the cells of this run that must
finish first (an evaluate cell's train cell; the earlier cell that trains an interpreter it shares); once they
have, `gate(cell)` may answer an outcome to record instead of running the cell (its detector's training failed)
or None to run it. `LocalExecutor` runs cells in this process, in the order given (which satisfies `after`).
`DaskExecutor` (`dask_executor.py`) submits each cell as soon as its prerequisites are recorded, so evaluate
cells of a finished detector run beside the training of the others; it ships the same picklable cell objects and
returns the same outcomes, so cells, keys and the store do not change with the executor.
"""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from .errors import BenchmarkError
from .outcome import Outcome

Prerequisites = Callable[[Any], tuple[str, ...]]
Gate = Callable[[Any], Outcome | None]


class Executor(Protocol):
    remote: bool  # cells run in other processes: the driver prepares the data they read

    def run(self, cells: Iterable[Any], ws: Any, *, on_start: Callable[[Any], None],
            progress: Callable[[str], None] | None = None, after: Prerequisites | None = None,
            gate: Gate | None = None, priority: Callable[[Any], int] | None = None) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


def cell_kind(cell: Any) -> str:
    """"train" or "evaluate"."""
    from .cells import TrainCell
    return "train" if isinstance(cell, TrainCell) else "evaluate"


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

    def run(self, cells: Iterable[Any], ws: Any, *, on_start: Callable[[Any], None],
            progress: Callable[[str], None] | None = None, after: Prerequisites | None = None,
            gate: Gate | None = None, priority: Callable[[Any], int] | None = None) -> Iterator[Outcome]:
        done: set[str] = set()
        cells = list(cells)
        keys = {cell.key for cell in cells}
        for cell in cells:  # in order: every prerequisite has run before the cells that wait for it
            early = [k for k in (after(cell) if after is not None else ()) if k in keys and k not in done]
            if early:
                raise ValueError(f"cell {cell.key} is listed before its prerequisites {early}")
            held = gate(cell) if gate is not None else None
            if held is None:
                on_start(cell)
                held = guarded(lambda c: cell_runner(cell_kind(c))(c, ws, progress), cell)
            done.add(cell.key)
            yield held

    def close(self) -> None:
        pass


def guarded(run: Callable[[Any], Outcome], cell: Any) -> Outcome:
    """Run a cell; any exception (a plugin's `SystemExit` too, anything but Ctrl-C) becomes that cell's recorded
    failure and the suite goes on."""
    t0 = time.monotonic()
    try:
        return run(cell)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        detail = traceback.format_exc(limit=6)
        # how long it ran before failing: a progress line on a pool shows it (the time since the previous
        # outcome is not this cell's)
        return Outcome(cell.key, {**cell.describe(), "status": "failed", "reason": reason, "traceback": detail,
                                  "failed_after_s": round(time.monotonic() - t0, 3)}, None)


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
