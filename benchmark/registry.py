"""One registry pattern for the four plugin kinds: dataset, detector, explainer, metric.

A plugin registers itself with a decorator and data-only metadata, validated into its kind's frozen spec
(`benchmark.specs`: an unknown key, need or base class is a one-line error at import)::

    @detectors.register("mae", summary="...", version=1, capabilities={"reconstructs"})
    class MaskedAE(Detector): ...

Its defaults are its constructor's (`Plugin.defaults` reads the signature).

Third-party packages add plugins through the entry-point group ``benchmark.adapters``: each entry
point names a module that is imported (its decorators register) before the registry is read.
"""
from __future__ import annotations

import ast
import difflib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from hashlib import sha256
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .errors import BenchmarkError, UnknownPluginError
from .integrity import check_name
from .needs import Need
from .specs import PluginSpec, build_spec, check_keys, declared_fields, signature_defaults

KINDS = ("dataset", "detector", "explainer", "metric")
ENTRY_POINT_GROUP = "benchmark.adapters"


@dataclass(frozen=True)
class Plugin:
    """A registered factory (class or function) and its metadata (`spec`, of the kind's spec class)."""

    kind: str
    name: str
    factory: Callable[..., Any]
    summary: str
    version: int
    spec: PluginSpec | None = None

    @property
    def needs(self) -> frozenset[Need]:
        return getattr(self.spec, "needs", frozenset())

    @property
    def capabilities(self) -> frozenset[str]:
        return getattr(self.spec, "capabilities", frozenset())

    @property
    def defaults(self) -> dict[str, Any]:
        """The factory's keyword defaults, from its signature."""
        return signature_defaults(self.kind, self.factory)

    @property
    def extra(self) -> dict[str, Any]:
        """The spec's fields that differ from their defaults (needs and capabilities aside), as listings show."""
        return declared_fields(self.spec)

    @property
    def source_file(self) -> Path:
        return Path(inspect.getsourcefile(self.factory) or "")

    def source_hash(self) -> str:
        """Hash of the file that defines the plugin and of every first-party module it imports, transitively
        (its private helpers like `adapters/detectors/_skip_cae.py`, and the engine modules it builds on):
        editing any of them invalidates only the cells that run this code."""
        path = self.source_file
        if not path.is_file():
            return "nosource"
        return _closure_hash_once(path.resolve())

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


FIRST_PARTY = ("benchmark", "adapters")
CODE_ROOT = Path(__file__).resolve().parent.parent


def local_sources(path: Path) -> list[Path]:
    """`path` and the first-party modules it imports, transitively, sorted."""
    return [file for file, _ in _source_closure(Path(path).resolve())]


def closure_hash(path: Path) -> str:
    """Hash of the import closure of `path`: each file's bytes under its name relative to the package root
    holding it, so two checkouts of the same code at different places give the same hash."""
    h = sha256()
    for file, data in _source_closure(Path(path).resolve()):
        h.update(_relative_name(file).encode() + b"\0" + data)
    return h.hexdigest()[:16]


@cache
def _closure_hash_once(path: Path) -> str:
    """`closure_hash` of a plugin's file, once per process: every cell key asks for it, and a plugin edited
    while a run is under way must not move the keys of that run's later cells."""
    return closure_hash(path)


def _relative_name(file: Path) -> str:
    parts = file.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in FIRST_PARTY:
            return "/".join(parts[i:])
    return file.name


def _source_closure(path: Path) -> list[tuple[Path, bytes]]:
    """(file, bytes) of `path` and every module it imports that resolves to a file of its own package tree
    (relative imports) or of `benchmark/` and `adapters/` (absolute imports), each file read once. A package's
    `__init__.py` counts only where the package itself is imported (`from . import metrics`), not for every
    submodule import: `__init__` files register or re-export, and would otherwise pull in every sibling."""
    found: dict[Path, bytes] = {}
    todo = [path]
    while todo:
        file = todo.pop()
        if file in found or not file.is_file():
            continue
        found[file] = data = file.read_bytes()
        todo.extend(_imports(file, data, _package_root(file)))
    return sorted(found.items())


def _package_root(file: Path) -> Path:
    """The folder above the outermost package holding `file` (where `benchmark/` and `adapters/` sit)."""
    folder = file.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        folder = folder.parent
    return folder


@lru_cache(maxsize=1024)
def _imports(file: Path, data: bytes, root: Path) -> tuple[Path, ...]:
    """First-party files `file` imports, parsed once per content: every cell key hashes its code's closure,
    so a suite asks for the same few files thousands of times."""
    imported: list[Path] = []
    for node in ast.walk(ast.parse(data, filename=str(file))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = file.parent
                for _ in range(node.level - 1):
                    base = base.parent
            elif node.module and node.module.split(".")[0] in FIRST_PARTY:
                base = root
            else:
                continue
            dotted = node.module.split(".") if node.module else []
            module = _module_file(base, dotted) if dotted else None
            if module is not None:
                imported.append(module)
            # `from pkg import name`: name may itself be a module of pkg
            folder = base.joinpath(*dotted)
            imported.extend(m for alias in node.names if (m := _module_file(folder, [alias.name])) is not None)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FIRST_PARTY and (m := _module_file(root, alias.name.split("."))):
                    imported.append(m)
    return tuple(imported)


def _module_file(base: Path, dotted: list[str]) -> Path | None:
    """The file of module `base/<dotted>`: `x.py`, or a package's `x/__init__.py`."""
    target = base.joinpath(*dotted)
    if target.with_suffix(".py").is_file():
        return target.with_suffix(".py")
    if (target / "__init__.py").is_file():
        return target / "__init__.py"
    return None


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
        **declared: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a factory under `name`; `declared` are the fields of the kind's spec
        (`benchmark.specs.declarable(kind)`)."""
        check_name(name, f"{self.kind} plugin name")  # names become folders of the store and the tables
        check_keys(self.kind, name, declared)

        def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._plugins and self._plugins[name].factory is not factory:
                previous = self._plugins[name].source_file
                raise ValueError(f"{self.kind} {name!r} is already registered by {previous}")
            self._plugins[name] = Plugin(kind=self.kind, name=name, factory=factory, summary=summary,
                                         version=version, spec=build_spec(self.kind, name, factory, declared))
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


BUILTIN_ENTRY_POINTS = {"builtin-metrics": "benchmark.metrics", "builtin-adapters": "adapters"}


def load_plugins() -> None:
    """Import every module of the ``benchmark.adapters`` entry points once: the built-ins (this project's own
    entry points, first) and then third-party packages in name order. The engine names no plugin module."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    points = sorted(entry_points(group=ENTRY_POINT_GROUP),
                    key=lambda ep: (ep.name not in BUILTIN_ENTRY_POINTS, ep.name))
    missing = sorted(set(BUILTIN_ENTRY_POINTS) - {ep.name for ep in points})
    if missing:
        raise BenchmarkError(f"the built-in plugins' entry points ({', '.join(missing)}) are not installed: "
                             "install the project (pip install -e .) so that its metadata lists them")
    for ep in points:
        if ep.name in BUILTIN_ENTRY_POINTS:
            ep.load()  # a broken built-in is a broken install: let it raise
            continue
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
