"""Replaying a finished run: when nothing that shapes a suite's results has changed since its last
complete run into the same store, `run` copies that run's published folder instead of loading every
plugin (which imports torch and friends) and re-rendering the page.

The replay key hashes, without importing any plugin: the suite file, the CLI filters, the source of
`benchmark/` and `adapters/`, the dataset recipes, and every `benchmark.adapters` entry point with the
source of its top-level package. Anything else falls through to the normal (cached-cell) path.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from argparse import Namespace
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT_GROUP = "benchmark.adapters"


def _hash_tree(h: hashlib._Hash, folder: Path, pattern: str) -> None:
    for path in sorted(folder.rglob(pattern)):
        if "__pycache__" not in path.parts:
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())


def replay_key(args: Namespace, suite_file: Path) -> str:
    h = hashlib.sha256()
    h.update(suite_file.read_bytes())
    h.update(json.dumps([args.datasets, args.detectors, args.explainers, args.seeds, args.data_root,
                         args.device], default=str).encode())
    for package in ("benchmark", "adapters"):
        _hash_tree(h, ROOT / package, "*.py")
    if (ROOT / "tasks").is_dir():
        _hash_tree(h, ROOT / "tasks", "*.toml")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        h.update(f"{ep.name}={ep.value}".encode())
        spec = importlib.util.find_spec(ep.value.split(":")[0].split(".")[0])
        if spec is None:
            continue
        for location in spec.submodule_search_locations or [str(Path(spec.origin or "").parent)]:
            _hash_tree(h, Path(location), "*.py")
    return h.hexdigest()[:20]


def _published_copy(out: Path, suite_name: str, key: str) -> Path:
    return out / "published" / f"{suite_name}-{key}"


def _all_cells_finished(out: Path, suite_name: str) -> bool:
    manifest = out / "suites" / f"{suite_name}.json"
    if not manifest.is_file():
        return False
    record = json.loads(manifest.read_text())
    for key in record["train"] + record["evaluate"]:
        cell = out / "cells" / key / "cell.json"
        if not cell.is_file() or json.loads(cell.read_text())["status"] not in ("done", "skipped"):
            return False
    return True


def try_replay(args: Namespace, suite_name: str, suite_file: Path) -> Path | None:
    """The leaderboard folder written from the stored copy, or None when a replay does not apply."""
    copy = _published_copy(args.out, suite_name, replay_key(args, suite_file))
    if not copy.is_dir() or not _all_cells_finished(args.out, suite_name):
        return None
    target = Path(args.leaderboards) / suite_name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{suite_name}."))
    shutil.copytree(copy, staging, dirs_exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def remember(args: Namespace, suite_name: str, suite_file: Path, folder: Path) -> None:
    """Keep a copy of a complete run's published folder for later replays (atomic rename)."""
    copy = _published_copy(args.out, suite_name, replay_key(args, suite_file))
    if copy.exists():
        return
    copy.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=copy.parent, prefix=".staging."))
    shutil.copytree(folder, staging, dirs_exist_ok=True)
    staging.rename(copy)
