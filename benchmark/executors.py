"""Executors run cells and hand each outcome back to the driver, which alone writes the store.

`LocalExecutor` runs cells in this process, in order. A distributed executor (Dask) implements the
same `map`: it receives the same picklable cell objects and returns the same outcomes, so cells, keys
and the store do not change with the executor.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import BenchmarkError


@dataclass
class Outcome:
    """What a cell returns: its record (status, reason, cost), its result rows, the files it made (store-relative
    path -> bytes: checkpoints, examples) and the existing store files its result relies on."""

    key: str
    record: dict[str, Any]
    rows: list[dict[str, Any]] | None
    files: dict[str, bytes] = field(default_factory=dict)
    uses: list[str] = field(default_factory=list)
    # parts cached on their own (an evaluate cell's explanations and metric values), written before the cell
    parts: list[Outcome] = field(default_factory=list)


class Executor(Protocol):
    def map(self, fn: Callable[[Any], Outcome], cells: Iterable[Any]) -> Iterator[Outcome]: ...


class LocalExecutor:
    def map(self, fn: Callable[[Any], Outcome], cells: Iterable[Any]) -> Iterator[Outcome]:
        for cell in cells:
            yield fn(cell)


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


def make_executor(name: str) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "dask":
        raise BenchmarkError("--executor dask is not available yet in this version; use --executor local")
    raise BenchmarkError(f"unknown executor {name!r}; use local")
