"""What a cell returns to the driver, the store's one writer.

Its own module so that the cell runners (`training.py`, `evaluation.py`) import it without importing the
executors: a cell's key hashes its runner's first-party import closure, and how cells are scheduled (local, Dask)
does not change what they compute.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
