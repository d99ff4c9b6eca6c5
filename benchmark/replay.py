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
import sys
from argparse import Namespace
from importlib.metadata import entry_points
from pathlib import Path

from .integrity import check_name, folder_digests, inside, record_problem, remove_stale_staging, staging_folder, swap_in

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
                         args.device, getattr(args, "add_detectors", None), getattr(args, "add_explainers", None),
                         getattr(args, "add_metrics", None), getattr(args, "precision", None)],
                        default=str).encode())
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
    return out / "published" / f"{check_name(suite_name, 'suite name')}-{key}"


def _all_cells_finished(out: Path, suite_name: str) -> bool:
    """Every cell of the suite's last run has a finished record whose files verify."""
    try:
        record = json.loads((out / "suites" / f"{suite_name}.json").read_text())
        keys = record["train"] + record["evaluate"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for key in keys:
        try:
            cell = json.loads((out / "cells" / key / "cell.json").read_text())
        except (OSError, ValueError):
            return False
        if cell.get("status") not in ("done", "skipped") or record_problem(out, cell) is not None:
            return False
    return True


def copy_problem(copy: Path) -> str | None:
    """Why a stored published copy cannot be replayed (a file differs from, or is missing in, its manifest's
    list, or a file is not listed), or None when it matches its manifest exactly."""
    try:
        listed = json.loads((copy / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "its manifest.json is missing or unreadable"
    if not isinstance(listed, dict):
        return "its manifest.json lists no files"
    found = folder_digests(copy, skip=("manifest.json",))
    if found != listed:
        changed = sorted(set(found) ^ set(listed)) or sorted(k for k in found if found[k] != listed.get(k))
        return f"{changed[0]} differs from its manifest"
    return None


def try_replay(args: Namespace, suite_name: str, suite_file: Path) -> Path | None:
    """The leaderboard folder written from the stored copy, or None when a replay does not apply (a stored copy
    that fails its manifest's hashes is discarded with a notice, and the run publishes afresh)."""
    copy = _published_copy(args.out, suite_name, replay_key(args, suite_file))
    if not copy.is_dir() or not _all_cells_finished(args.out, suite_name):
        return None
    problem = copy_problem(copy)
    if problem is not None:
        print(f"notice: the stored copy of the published '{suite_name}' folder is damaged ({problem}): "
              f"publishing it again from the store", file=sys.stderr)
        shutil.rmtree(copy, ignore_errors=True)
        return None
    target = inside(args.leaderboards, Path(args.leaderboards) / suite_name)
    remove_stale_staging(target.parent)
    staging = staging_folder(target)
    try:
        shutil.copytree(copy, staging, dirs_exist_ok=True)
        swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remember(args: Namespace, suite_name: str, suite_file: Path, folder: Path) -> None:
    """Keep a copy of a complete run's published folder for later replays (atomic rename)."""
    copy = _published_copy(args.out, suite_name, replay_key(args, suite_file))
    if copy.exists():
        return
    remove_stale_staging(copy.parent)
    staging = staging_folder(copy)
    try:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        staging.rename(copy)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
