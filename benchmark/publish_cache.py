"""What `publish` keeps between runs, keyed by content: re-publishing after a change redoes only what it
changed (the figures it touched; the detection table when the anomaly scores moved).

Drawing is most of a publish's time (a quick suite: ~30 bar charts, curves, galleries), and adding a
metric changes one family's bars. A figure's key hashes the drawing code (`figures.py` and matplotlib's
version) and its inputs (the leaderboard columns it plots, its title, the example maps); the PNG is kept
under `<out>/cache/figures/<key>-<sha>.png`, its name carrying the SHA-256 of its bytes, so a damaged copy
is never used (it is drawn again). Without a store (`root=None`) every figure is drawn. `cached_frame`
does the same for a table (parquet under `<out>/cache/tables/`): the detection table is the one
`publish` would otherwise recompute, importing scikit-learn, after every added metric.
"""
from __future__ import annotations

import contextlib
import io
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
TABLES = "cache/tables"


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

    def draw(self, path: Path, inputs: Any, draw: Callable[[], Path | None]) -> Path | None:
        """`path` holding the figure `draw()` makes of `inputs`: copied from the cache when it has one."""
        if self.folder is None:
            return draw()
        key = digest([self.code, Path(path).name, inputs])[:32]
        data = _valid(self.folder, key, "png")
        if data is not None:
            atomic_write_bytes(Path(path), data)
            return Path(path)
        made = draw()
        if made is not None:
            _keep(self.folder, key, "png", Path(made).read_bytes())
        return made


def _valid(folder: Path, key: str, suffix: str) -> bytes | None:
    """The bytes of `<key>-<sha>.<suffix>` in `folder` whose content matches its name; damaged copies go."""
    for cached in sorted(folder.glob(f"{key}-*.{suffix}")):
        data = cached.read_bytes()
        if sha256(data).hexdigest()[:16] == cached.stem.split("-")[-1]:
            return data
        with contextlib.suppress(OSError):
            cached.unlink()
    return None


def _keep(folder: Path, key: str, suffix: str, data: bytes) -> None:
    with contextlib.suppress(OSError):  # a read-only store only costs the next publish its speed
        atomic_write_bytes(folder / f"{key}-{sha256(data).hexdigest()[:16]}.{suffix}", data)


def cached_frame(root: Path | None, name: str, inputs: Any, build: Callable[[], pd.DataFrame],
                 code: tuple[Path, ...] = ()) -> pd.DataFrame:
    """`build()`'s table for `inputs`, from `<root>/cache/tables/` when an earlier publish made it; `code`: the
    source files whose edits must rebuild it."""
    if root is None:
        return build()
    folder = Path(root) / TABLES
    key = digest([name, [p.read_bytes() for p in code], inputs])[:32]
    data = _valid(folder, key, "parquet")
    if data is not None:
        return pd.read_parquet(io.BytesIO(data))
    table = build()
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    _keep(folder, key, "parquet", buf.getvalue())
    return table
