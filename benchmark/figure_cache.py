"""Drawn figures kept by what they show: re-publishing after a change redraws only the figures it changed.

Drawing is most of a publish's time (a quick suite: ~30 bar charts, curves, galleries), and adding a
metric changes one family's bars. A figure's key hashes the drawing code (`figures.py` and matplotlib's
version) and its inputs (the leaderboard columns it plots, its title, the example maps); the PNG is kept
under `<out>/cache/figures/<key>-<sha>.png`, its name carrying the SHA-256 of its bytes, so a damaged copy
is never used (it is drawn again). Without a store (`root=None`) every figure is drawn.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from . import figures
from .store import atomic_write_bytes

FOLDER = "cache/figures"


def digest(value: Any, h=None):
    """A stable hash of plain values, arrays, frames and dataclasses (the inputs of a figure)."""
    top = h is None
    h = h or sha256()
    if isinstance(value, pd.DataFrame):
        h.update(b"frame" + repr(list(value.columns)).encode())
        h.update(value.to_csv(index=True, lineterminator="\n").encode())
    elif isinstance(value, np.ndarray):
        h.update(b"array" + str(value.dtype).encode() + repr(value.shape).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif is_dataclass(value) and not isinstance(value, type):
        h.update(type(value).__name__.encode())
        for f in fields(value):
            digest(f.name, h)
            digest(getattr(value, f.name), h)
    elif isinstance(value, dict):
        h.update(b"dict")
        for k in sorted(value, key=repr):
            digest(k, h)
            digest(value[k], h)
    elif isinstance(value, (list, tuple)):
        h.update(b"seq%d" % len(value))
        for v in value:
            digest(v, h)
    else:
        h.update(type(value).__name__.encode() + repr(value).encode())
    return h.hexdigest() if top else h


def _code_digest() -> str:
    return sha256(Path(figures.__file__).read_bytes() + matplotlib.__version__.encode()).hexdigest()[:16]


class FigureCache:
    def __init__(self, root: Path | None):
        self.folder = Path(root) / FOLDER if root is not None else None
        self.code = _code_digest()
        self.drawn = 0
        self.reused = 0

    def draw(self, path: Path, inputs: Any, draw: Callable[[], Path | None]) -> Path | None:
        """`path` holding the figure `draw()` makes of `inputs`: copied from the cache when it has one."""
        if self.folder is None:
            self.drawn += 1
            return draw()
        key = digest([self.code, Path(path).name, inputs])[:32]
        for cached in sorted(self.folder.glob(f"{key}-*.png")):
            data = cached.read_bytes()
            if sha256(data).hexdigest()[:16] == cached.stem.split("-")[-1]:
                atomic_write_bytes(Path(path), data)
                self.reused += 1
                return Path(path)
            with contextlib.suppress(OSError):
                cached.unlink()  # damaged: drawn again below
        made = draw()
        self.drawn += 1
        if made is not None:
            data = Path(made).read_bytes()
            with contextlib.suppress(OSError):  # a read-only store only costs the next publish its speed
                atomic_write_bytes(self.folder / f"{key}-{sha256(data).hexdigest()[:16]}.png", data)
        return made
