"""The results store under `--out`: one folder per cell, written atomically, read back for publishing.

    <out>/cells/<key>/rows.parquet    per-clip long-format rows (ROW_COLUMNS)
    <out>/cells/<key>/cell.json       status (done/failed/skipped), reason, description, cost, files
    <out>/checkpoints/<key>.pt        trained detectors (train-cell key) and interpreters
    <out>/examples/<ds>/<det>/<ex>-s<seed>-<key>/  a few example maps and listenable explanations
    <out>/suites/<name>.json          the cell keys of the last run of a suite

Every file is written to a temporary name in its folder and renamed, so a killed run leaves either
the old state or the new one; `cell.json` is written last and lists the size and SHA-256 of every file
the cell wrote or relies on (`files`), so a cell counts as finished only while all of them verify: a
truncated, deleted or edited file makes the cell unfinished again. Only the driver process writes here
(cells return their rows and files). Checkpoints are loaded with `weights_only=True`: a crafted pickle
is refused, not run.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .errors import BenchmarkError
from .integrity import digest_bytes, digest_file, inside, record_problem

ROW_COLUMNS = ["dataset", "machine", "section", "domain", "clip_id", "label", "detector", "detector_seed",
               "explainer", "metric", "param", "value", "chance"]
DONE, FAILED, SKIPPED = "done", "failed", "skipped"
ROWS_FILE = "rows.parquet"
_UMASK = os.umask(0)
os.umask(_UMASK)


class DamagedFile(BenchmarkError):
    """A store file that exists but cannot be read as what it should be."""


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


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """A checkpoint as written to the store: tensors, plain containers and primitives only, so that
    `torch.load(weights_only=True)` reads it back."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def read_checkpoint(path: Path, device: torch.device | str) -> dict[str, Any]:
    """A checkpoint file's dict, loaded without running code; `DamagedFile` (one line naming the file) when it
    is not a readable checkpoint of tensors and plain containers."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise DamagedFile(f"'{path}' is not a valid checkpoint: it holds Python objects other than tensors and "
                          f"plain containers, refused because loading them could run code") from None
    except Exception as exc:  # truncated zip, not a torch file at all
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DamagedFile(f"'{path}' is not a valid checkpoint ({why}): pass a checkpoint the benchmark "
                          f"wrote, or re-run the suite to rebuild it") from None
    if not isinstance(ckpt, dict):
        raise DamagedFile(f"'{path}' is not a valid checkpoint (it holds a {type(ckpt).__name__}, not a dict)")
    return ckpt


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def write(self, relpath: str, data: bytes) -> dict[str, Any]:
        """Write one file under the store root (never outside it); returns its digest."""
        atomic_write_bytes(inside(self.root, self.root / relpath), data)
        return digest_bytes(data)

    # --- cells -----------------------------------------------------------------------------------
    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def rows_relpath(self, key: str) -> str:
        return f"cells/{key}/{ROWS_FILE}"

    def status(self, key: str) -> dict[str, Any] | None:
        """The cell's record, or None when it has none (or an unreadable one, which counts as none)."""
        path = self.cell_dir(key) / "cell.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and "status" in record else None

    def problem(self, key: str) -> str | None:
        """Why a finished cell cannot be trusted (a file it lists is missing or changed), or None."""
        return record_problem(self.root, self.status(key))

    def is_done(self, key: str) -> bool:
        st = self.status(key)
        return st is not None and st["status"] in (DONE, SKIPPED) and record_problem(self.root, st) is None

    def finish(self, key: str, record: dict[str, Any], rows: list[dict[str, Any]] | None = None,
               files: dict[str, bytes] | None = None, uses: list[str] = ()) -> None:
        """Write a cell's rows and files, then its record listing every file's digest (and those of the
        existing files it `uses`, like a trained interpreter): the record marks the cell finished."""
        digests: dict[str, Any] = {}
        for relpath, data in sorted((files or {}).items()):
            digests[relpath] = self.write(relpath, data)
        for relpath in uses:
            if relpath not in digests and (self.root / relpath).is_file():
                digests[relpath] = digest_file(self.root / relpath)
        rows_path = self.cell_dir(key) / ROWS_FILE
        if rows is not None:
            buf = io.BytesIO()
            rows_frame(rows).to_parquet(buf, index=False)
            digests[self.rows_relpath(key)] = self.write(self.rows_relpath(key), buf.getvalue())
        else:
            rows_path.unlink(missing_ok=True)  # an earlier outcome's rows must not outlive its record
        record = {**record, "files": digests}
        atomic_write_text(self.cell_dir(key) / "cell.json", json.dumps(record, indent=1, sort_keys=True, default=str))

    def rows(self, keys: list[str]) -> pd.DataFrame:
        """The rows every listed record vouches for; `DamagedFile` when a listed rows file does not verify."""
        frames = []
        for key in keys:
            record = self.status(key)
            if record is None or self.rows_relpath(key) not in record.get("files", {}):
                continue
            problem = record_problem(self.root, {**record, "status": DONE})
            if problem is not None:
                raise DamagedFile(f"cell {record.get('label', key)} ({key[:10]}) is damaged: {problem}")
            frames.append(pd.read_parquet(self.cell_dir(key) / ROWS_FILE))
        if not frames:
            return rows_frame([])
        return pd.concat(frames, ignore_index=True)

    def records(self, keys: list[str]) -> list[dict[str, Any]]:
        return [r for k in keys if (r := self.status(k)) is not None]

    # --- artifacts -------------------------------------------------------------------------------
    def checkpoint_relpath(self, key: str) -> str:
        return f"checkpoints/{key}.pt"

    def checkpoint_path(self, key: str) -> Path:
        return self.root / self.checkpoint_relpath(key)

    def load_checkpoint(self, key: str, device: torch.device | str) -> dict[str, Any] | None:
        """The checkpoint under `key`, None when there is none; `DamagedFile` when it cannot be read."""
        path = self.checkpoint_path(key)
        if not path.is_file():
            return None
        return read_checkpoint(path, device)

    def examples_relpath(self, key: str, *names: str) -> str:
        """Examples of a cell, under readable names: examples/<dataset>/<detector>/<explainer>-s<seed>-<key>."""
        return "/".join(["examples", *names[:-1], f"{names[-1]}-{key[:10]}"])

    def examples_dir(self, key: str, *names: str) -> Path:
        return self.root / self.examples_relpath(key, *names)

    # --- suites ----------------------------------------------------------------------------------
    def record_suite(self, name: str, manifest: dict[str, Any]) -> None:
        self.write(f"suites/{name}.json", json.dumps(manifest, indent=1, sort_keys=True).encode())

    def suite_manifest(self, name: str) -> dict[str, Any] | None:
        path = self.root / "suites" / f"{name}.json"
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except (OSError, ValueError):
            raise DamagedFile(f"'{path}' is damaged: re-run the suite to rewrite it") from None
