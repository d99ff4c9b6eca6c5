"""What keeps untrusted or damaged files from becoming results: names that may become paths, file digests a
cell record lists and verifies, the lock that serialises runs on one store, and the staging-folder swap
that publishes a folder whole or not at all.

Imports nothing heavy: `run` checks a replay with it before torch is loaded.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import BenchmarkError

NAME_PATTERN = re.compile(r"[a-z0-9_][a-z0-9_.-]*")
NAME_MAX = 100
STAGING = ".staging-"


def check_name(name: Any, what: str) -> str:
    """`name` when it can be one path component (lower-case letters, digits, `_ . -`, not starting with a
    dot), else a one-line `BenchmarkError` naming `what`."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > NAME_MAX:
        raise BenchmarkError(f"{what} {name!r} is not a valid name: use lower-case letters, digits, '_', '.' and "
                             f"'-' (not starting with '.', at most {NAME_MAX} characters), no path separators")
    return name


def inside(root: Path, path: Path) -> Path:
    """`path` resolved, when it lies inside `root` (resolved); a `BenchmarkError` otherwise."""
    base, target = Path(root).resolve(), Path(path).resolve()
    if target != base and base not in target.parents:
        raise BenchmarkError(f"refusing to write '{path}': it resolves outside '{root}'")
    return target


# --- digests -------------------------------------------------------------------------------------------
def digest_bytes(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def digest_file(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def file_problem(root: Path, relpath: str, expected: dict[str, Any]) -> str | None:
    """Why the file `root/relpath` does not match its recorded digest, or None when it does."""
    path = Path(root) / relpath
    if not path.is_file():
        return f"{relpath} is missing"
    if path.stat().st_size != expected.get("size"):
        return f"{relpath} has {path.stat().st_size} bytes, recorded {expected.get('size')}"
    if digest_file(path)["sha256"] != expected.get("sha256"):
        return f"{relpath} does not match its recorded hash"
    return None


def folder_digests(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under `folder` by its relative POSIX path (those named in `skip` left out)."""
    return {p.relative_to(folder).as_posix(): digest_file(p)["sha256"] for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() not in skip}


def record_problem(root: Path, record: dict[str, Any] | None) -> str | None:
    """Why a finished cell's record cannot be trusted (a listed file missing or changed), or None. A `done`
    record must list its files (records of older versions did not: they count as damaged)."""
    if record is None or record.get("status") != "done":
        return None
    files = record.get("files")
    if not isinstance(files, dict):
        return "its record lists no files (written by an older version)"
    for relpath, expected in sorted(files.items()):
        if (problem := file_problem(root, relpath, expected)) is not None:
            return problem
    return None


# --- one run per store -----------------------------------------------------------------------------------
@contextmanager
def store_lock(out: Path) -> Iterator[None]:
    """Hold `<out>/.lock` for the block: a second run or publish on the same store waits and says so."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fh = open(out / ".lock", "a+")
    except OSError as exc:
        raise BenchmarkError(f"cannot use '{out}' as the results store: {exc.strerror or exc}") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            print(f"waiting: {holder} is using the store '{out}'", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- whole folders -----------------------------------------------------------------------------------------
def staging_folder(target: Path) -> Path:
    """A new empty folder beside `target` that `swap_in` renames into place; its name carries this pid."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{STAGING}{os.getpid()}-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)  # mkdtemp makes 0700; a published folder reads like any other
    return path


def swap_in(staging: Path, target: Path) -> None:
    """Replace the folder `target` by `staging` (two renames; the old folder is removed afterwards)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{STAGING}{os.getpid()}-old-"))
        os.rmdir(old)
        try:
            target.rename(old)
        except FileNotFoundError:  # another writer moved it first
            old = None
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove staging folders under `parent` left by processes that no longer run; returns what went."""
    removed = []
    if not Path(parent).is_dir():
        return removed
    for path in Path(parent).glob(f".*{STAGING}*"):
        pid = path.name.split(STAGING, 1)[1].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
