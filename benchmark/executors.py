"""Executors run cells and hand each outcome back to the driver, which alone writes the store.

`LocalExecutor` runs cells in this process, in order. A distributed executor (Dask) implements the
same `map`: it receives the same picklable cell objects and returns the same outcomes, so cells, keys
and the store do not change with the executor.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import BenchmarkError


@dataclass
class Outcome:
    """What a cell returns: its record (status, reason, cost) and its result rows."""

    key: str
    record: dict[str, Any]
    rows: list[dict[str, Any]] | None


class Executor(Protocol):
    def map(self, fn: Callable[[Any], Outcome], cells: Iterable[Any]) -> Iterator[Outcome]: ...


class LocalExecutor:
    def map(self, fn: Callable[[Any], Outcome], cells: Iterable[Any]) -> Iterator[Outcome]:
        for cell in cells:
            yield fn(cell)


def guarded(run: Callable[[Any], tuple[dict, list]], cell: Any) -> Outcome:
    """Run a cell; any exception becomes that cell's recorded failure and the suite goes on."""
    try:
        record, rows = run(cell)
        return Outcome(cell.key, record, rows)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
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
