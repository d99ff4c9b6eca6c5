"""The plugin listing without importing the plugins: `list` and `--help` answer in well under a second.

Importing the built-in plugins pulls in torch, scipy and scikit-learn (several seconds). Their metadata
(`Plugin.describe()`) depends only on their source, so the listing is stored beside the code in
`plugin_index.json` together with the hash of every built-in plugin module and its first-party imports
(`registry.local_sources`). A listing whose hash no longer matches the code is never used: it is built
again by importing the plugins, and kept in the user's cache folder for the next call. Third-party
plugins (the `benchmark.adapters` entry points) are always imported, so the listing always holds them.

`python -m benchmark.plugin_index` rewrites the committed index (a test says when it is stale).
"""
from __future__ import annotations

import json
import os
import tempfile
from hashlib import sha256
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .registry import BUILTIN_ENTRY_POINTS, CODE_ROOT, ENTRY_POINT_GROUP, KINDS, _relative_name, local_sources

INDEX_FILE = Path(__file__).with_name("plugin_index.json")
PLUGIN_PACKAGES = ("adapters", "benchmark/metrics")


def sources_digest() -> str:
    """Hash of every built-in plugin module and of the first-party modules they import."""
    files: set[Path] = set()
    for package in PLUGIN_PACKAGES:
        for module in sorted((CODE_ROOT / package).rglob("*.py")):
            files.update(local_sources(module))
    files.add(Path(__file__).resolve().with_name("registry.py"))
    h = sha256()
    for file in sorted(files):
        h.update(_relative_name(file).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:16]


def build_listing() -> dict[str, list[dict[str, Any]]]:
    """Import every plugin and describe it, as plain JSON values (tuples become lists)."""
    from .registry import registry
    listing = {kind: [p.describe() for p in registry(kind).plugins()] for kind in KINDS}
    return json.loads(json.dumps(listing, default=str))


def listing() -> dict[str, list[dict[str, Any]]]:
    """Every registered plugin's description by kind: from the index when it matches the code, else built."""
    if any(ep.name not in BUILTIN_ENTRY_POINTS for ep in entry_points(group=ENTRY_POINT_GROUP)):
        return build_listing()  # a third-party package: its plugins are not in the index
    digest = sources_digest()
    for path in (INDEX_FILE, _user_index(digest)):
        stored = _read(path)
        if stored is not None and stored.get("digest") == digest:
            return stored["listing"]
    built = build_listing()
    _write(_user_index(digest), {"digest": digest, "listing": built})
    return built


def _user_index(digest: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "audio-xai-bench" / f"plugin-index-{digest}.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("listing"), dict) else None


def _write(path: Path, data: dict[str, Any]) -> None:
    """Atomic and best effort: a read-only home only costs the next call its speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as fh:
            json.dump(data, fh, indent=1)
        os.replace(fh.name, path)
    except OSError:
        pass


def write_index() -> Path:
    """Rewrite the committed index from the plugins as they are now."""
    INDEX_FILE.write_text(json.dumps({"digest": sources_digest(), "listing": build_listing()},
                                     indent=1) + "\n")
    return INDEX_FILE


if __name__ == "__main__":
    print(write_index())
