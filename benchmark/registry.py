"""One registry pattern for the four plugin kinds: dataset, detector, explainer, metric.

A plugin registers itself with a decorator and data-only metadata::

    @detectors.register("mae", summary="...", version=1, capabilities={"reconstructs"})
    class MaskedAE(Detector): ...

Third-party packages add plugins through the entry-point group ``benchmark.adapters``: each entry
point names a module that is imported (its decorators register) before the registry is read.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import sha256
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .errors import BenchmarkError, UnknownPluginError
from .integrity import check_name

KINDS = ("dataset", "detector", "explainer", "metric")
ENTRY_POINT_GROUP = "benchmark.adapters"


@dataclass(frozen=True)
class Plugin:
    """A registered factory (class or function) and its metadata."""

    kind: str
    name: str
    factory: Callable[..., Any]
    summary: str
    version: int
    capabilities: frozenset[str] = frozenset()
    needs: frozenset[str] = frozenset()
    defaults: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def source_file(self) -> Path:
        return Path(inspect.getsourcefile(self.factory) or "")

    def source_hash(self) -> str:
        """Hash of the file that defines the plugin and of the same-package modules it imports (its
        private helpers, like `adapters/detectors/_skip_cae.py`): editing them invalidates only its cells."""
        path = self.source_file
        if not path.is_file():
            return "nosource"
        h = sha256()
        for file, data in _source_closure(path):
            h.update(file.name.encode() + b"\0" + data)
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "summary": self.summary}
        if self.capabilities:
            out["capabilities"] = sorted(self.capabilities)
        if self.needs:
            out["needs"] = sorted(self.needs)
        if self.defaults:
            out["defaults"] = self.defaults
        out.update(self.extra)
        return out


def local_sources(path: Path) -> list[Path]:
    """`path` and the modules of its own package it imports with relative imports, transitively, sorted."""
    return [file for file, _ in _source_closure(path)]


def _source_closure(path: Path) -> list[tuple[Path, bytes]]:
    """(file, bytes) of `local_sources(path)`, each file read once."""
    found: dict[Path, bytes] = {}
    todo = [path]
    while todo:
        file = todo.pop()
        if file in found or not file.is_file():
            continue
        found[file] = data = file.read_bytes()
        todo.extend(_relative_imports(file, data))
    return sorted(found.items())


@lru_cache(maxsize=512)
def _relative_imports(file: Path, data: bytes) -> tuple[Path, ...]:
    """Parsed once per content of a file: every cell key hashes its plugins' sources, so a suite asks for the
    same few files thousands of times."""
    imported: list[Path] = []
    for node in ast.walk(ast.parse(data, filename=str(file))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                imported.append(file.parent / f"{node.module.split('.')[0]}.py")
            else:
                imported.extend(file.parent / f"{alias.name}.py" for alias in node.names)
    return tuple(imported)


class Registry:
    """Plugins of one kind, by name."""

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds are {', '.join(KINDS)}")
        self.kind = kind
        self._plugins: dict[str, Plugin] = {}

    def register(
        self,
        name: str,
        *,
        summary: str,
        version: int = 1,
        capabilities: set[str] | frozenset[str] = frozenset(),
        needs: set[str] | frozenset[str] = frozenset(),
        defaults: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        check_name(name, f"{self.kind} plugin name")  # names become folders of the store and the tables

        def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._plugins and self._plugins[name].factory is not factory:
                previous = self._plugins[name].source_file
                raise ValueError(f"{self.kind} {name!r} is already registered by {previous}")
            self._plugins[name] = Plugin(
                kind=self.kind, name=name, factory=factory, summary=summary, version=version,
                capabilities=frozenset(capabilities), needs=frozenset(needs),
                defaults=dict(defaults or {}), extra=dict(extra),
            )
            return factory

        return decorate

    def get(self, name: str) -> Plugin:
        load_plugins()
        try:
            return self._plugins[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._plugins, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._plugins))
            raise UnknownPluginError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._plugins)

    def plugins(self) -> list[Plugin]:
        return [self._plugins[n] for n in self.names()]

    def make(self, name: str, **params: Any) -> Any:
        plugin = self.get(name)
        accepted = inspect.signature(plugin.factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            unknown = sorted(set(params) - set(accepted))
            if unknown:
                raise BenchmarkError(
                    f"{self.kind} {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                    f"it takes: {', '.join(p for p in accepted if p != 'self') or 'none'}"
                )
        return plugin.factory(**params)


datasets = Registry("dataset")
detectors = Registry("detector")
explainers = Registry("explainer")
metrics = Registry("metric")
REGISTRIES = {"dataset": datasets, "detector": detectors, "explainer": explainers, "metric": metrics}

_loaded = False


def load_plugins() -> None:
    """Import the built-in adapters and every entry point of ``benchmark.adapters`` once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("benchmark.metrics")
    importlib.import_module("adapters")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party package must not hide the built-ins
            print(f"warning: entry point {ep.name!r} ({ep.value}) failed to load: {exc}", file=sys.stderr)


def registry(kind: str) -> Registry:
    key = kind.rstrip("s") if kind.rstrip("s") in REGISTRIES else kind
    if key not in REGISTRIES:
        close = difflib.get_close_matches(kind, [k + "s" for k in KINDS], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BenchmarkError(f"unknown plugin kind {kind!r}{hint} (kinds: datasets, detectors, explainers, metrics)")
    return REGISTRIES[key]
