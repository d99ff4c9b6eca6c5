"""The results store under `--out`: one folder per cell, written atomically, read back for publishing.

    <out>/cells/<key>/rows.parquet    per-clip long-format rows (ROW_COLUMNS)
    <out>/cells/<key>/cell.json       status (done/failed/skipped), reason, description, cost
    <out>/checkpoints/<key>.pt        trained detectors (train-cell key) and interpreters
    <out>/examples/<ds>/<det>/<ex>-s<seed>-<key>/  a few example maps and listenable explanations
    <out>/suites/<name>.json          the cell keys of the last run of a suite

Every file is written to a temporary name in its folder and renamed, so a killed run leaves either
the old state or the new one; `cell.json` is written last, so a cell counts as finished only once its
rows are on disk. Only the driver process writes here (workers return rows).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

ROW_COLUMNS = ["dataset", "machine", "section", "domain", "clip_id", "label", "detector", "detector_seed",
               "explainer", "metric", "param", "value", "chance"]
DONE, FAILED, SKIPPED = "done", "failed", "skipped"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files should read like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def rows_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=ROW_COLUMNS)
    return df.astype({"label": "int64", "detector_seed": "int64", "value": "float64", "chance": "float64",
                      "param": "str", "section": "str"})


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    # --- cells -----------------------------------------------------------------------------------
    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def status(self, key: str) -> dict[str, Any] | None:
        path = self.cell_dir(key) / "cell.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def is_done(self, key: str) -> bool:
        st = self.status(key)
        return st is not None and st["status"] in (DONE, SKIPPED)

    def finish(self, key: str, record: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> None:
        """Write a cell's rows (if any), then its record: the record marks the cell finished."""
        if rows is not None:
            buf = io.BytesIO()
            rows_frame(rows).to_parquet(buf, index=False)
            atomic_write_bytes(self.cell_dir(key) / "rows.parquet", buf.getvalue())
        atomic_write_text(self.cell_dir(key) / "cell.json", json.dumps(record, indent=1, sort_keys=True, default=str))

    def rows(self, keys: list[str]) -> pd.DataFrame:
        frames = [pd.read_parquet(self.cell_dir(k) / "rows.parquet") for k in keys
                  if (self.cell_dir(k) / "rows.parquet").is_file()]
        if not frames:
            return rows_frame([])
        return pd.concat(frames, ignore_index=True)

    def records(self, keys: list[str]) -> list[dict[str, Any]]:
        return [r for k in keys if (r := self.status(k)) is not None]

    # --- artifacts -------------------------------------------------------------------------------
    def checkpoint_path(self, key: str) -> Path:
        return self.root / "checkpoints" / f"{key}.pt"

    def save_checkpoint(self, key: str, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_path(key), buf.getvalue())

    def load_checkpoint(self, key: str, device: torch.device | str) -> dict[str, Any] | None:
        path = self.checkpoint_path(key)
        if not path.is_file():
            return None
        return torch.load(path, map_location=device, weights_only=False)

    def examples_dir(self, key: str, *names: str) -> Path:
        """Examples of a cell, under readable names: examples/<dataset>/<detector>/<explainer>-s<seed>-<key>."""
        return self.root / "examples" / Path(*names[:-1]) / f"{names[-1]}-{key[:10]}"

    # --- suites ----------------------------------------------------------------------------------
    def record_suite(self, name: str, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.root / "suites" / f"{name}.json", json.dumps(manifest, indent=1, sort_keys=True))

    def suite_manifest(self, name: str) -> dict[str, Any] | None:
        path = self.root / "suites" / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None
