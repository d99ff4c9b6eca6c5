"""Suites: declarative TOML in `tasks/suites/`, validated and expanded into train and evaluate cells.

A suite file::

    name = "smoke"
    seeds = [0]
    metrics = ["ff", "chunk_f1"]            # or "all", or a table [metrics.NAME] of params
    [metric_params.randomisation_ssim]       # parameters for metrics chosen by name or by "all"
    n_steps = 2
    [metric_clips]                           # a metric (by name) or a family its own clip budget: a seeded
    robustness = 16                          # subset of the cell's clips (localisation keeps all of them)
    [evaluate]                               # which test clips get explained, and in what batches
    clips = "anomalous"                      # "anomalous" | "all"
    seeds = [0, 1, 2]                        # the detector seeds explained (default: all); the others train
                                             # and score only (detector claims over seeds, at the cost of training)
    max_clips = 6                            # per dataset, chosen by a seeded shuffle
    batch_size = 8
    [datasets.synthetic-machines]            # a table of dataset params
    size = "smoke"
    [detectors.dense_ae]                     # detector params; `budget` is the training budget
    budget = { epochs = 5, patience = 3 }
    [explainers.error_map]                   # explainer params; `budget` for trained interpreters,
    detectors = ["ae"]                       # `detectors` to run it on only these (default: all),
    max_clips = 8                            # `max_clips` to explain fewer clips than [evaluate] says

`include = "quick"` (a suite name or a path) extends another suite: its tables merge key by key under this
file's. `explainers = "all"` (or `detectors = "all"`) takes every registered plugin with its defaults.
`[filter_sweep]` and `[[variants]]` add filtered or STFT copies of a dataset, `difficulty_sweep` copies generated
at other difficulties (`benchmark/variants.py`).

Validation happens before anything is written: unknown plugins (with did-you-mean), unknown keys,
parameters a plugin does not take, and malformed TOML all raise `BenchmarkError`.
"""
from __future__ import annotations

import inspect
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compute import PRECISIONS
from .errors import BenchmarkError
from .integrity import check_name
from .registry import Plugin, registry
from .suite_types import PluginConfig, Suite

if TYPE_CHECKING:  # the detector module imports torch; `run` replays without it
    from .detector import Budget

SUITES_DIR = Path(__file__).resolve().parent.parent / "tasks" / "suites"
TOP_KEYS = {"name", "description", "include", "seeds", "precision", "metrics", "metric_params", "metric_clips",
            "evaluate", "datasets", "detectors", "explainers", "filter_sweep", "variants", "difficulty_sweep"}
EVALUATE_KEYS = {"clips": "anomalous", "max_clips": 32, "batch_size": 16, "examples": 2}
EVALUATE_LEAST = {"max_clips": 1, "batch_size": 1, "examples": 0}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def suite_path(suite: str) -> Path:
    """A suite name in tasks/suites/ or a path to a TOML file."""
    candidate = Path(suite)
    # a folder that happens to share a suite's name (a `--out` called "quick") does not hide the suite
    if candidate.suffix == ".toml" or candidate.is_file():
        if not candidate.is_file():
            raise BenchmarkError(f"suite file '{suite}' does not exist")
        return candidate
    path = SUITES_DIR / f"{suite}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.toml")))
        raise BenchmarkError(f"unknown suite {suite!r}: known suites are {known}, or pass a path to a .toml file")
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchmarkError(f"suite file '{path}' is not valid TOML: {exc}") from None
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise BenchmarkError(f"suite file '{path}': unknown key(s) {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(sorted(TOP_KEYS))}")
    return raw


def _merged(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """`own` over `base`: tables merge key by key (recursively), any other value of `own` replaces."""
    out = dict(base)
    for key, value in own.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return out


def _with_includes(path: Path, seen: tuple[Path, ...] = ()
                   ) -> tuple[dict[str, Any], tuple[Path, ...], dict[str, Any]]:
    """The suite's raw table with its `include`d suite (a name or a path, itself possibly including one) merged
    under it, every file read, and the file's own table. The included suite's name and description are not
    inherited."""
    raw = _read(path)
    files = (*seen, path.resolve())
    if "include" not in raw:
        return raw, files, raw
    include = raw.pop("include")
    if not isinstance(include, str):
        raise BenchmarkError(f"suite file '{path}': include must be a suite name or a path to a .toml file")
    base_path = suite_path(include) if Path(include).is_absolute() or not (path.parent / include).is_file() \
        else path.parent / include
    if base_path.resolve() in files:
        raise BenchmarkError(f"suite file '{path}': include {include!r} includes itself (an include circle)")
    base, files, _ = _with_includes(base_path, files)
    for key in ("name", "description"):
        base.pop(key, None)
    return _merged(base, raw), files, raw


def _all(kind: str, value: Any) -> Any:
    """`explainers = "all"` (or detectors): every registered plugin with its default parameters."""
    if value == "all":
        return {n: {} for n in registry(kind).names()}
    return value


def load_suite(suite: str) -> Suite:
    path = suite_path(suite)
    raw, files, own = _with_includes(path)
    # this file sets the seeds over an included suite's explained seeds: it narrows them, as `--seeds` does
    narrows = "seeds" in own and "seeds" not in (own.get("evaluate") or {})
    raw["explainers"] = _all("explainer", raw.get("explainers"))
    raw["detectors"] = _all("detector", raw.get("detectors"))
    for key in ("datasets", "detectors", "explainers"):
        if not isinstance(raw.get(key), dict) or not raw[key]:
            raise BenchmarkError(f"suite file '{path}' needs a non-empty [{key}.NAME] table")
    name = check_name(raw.get("name", path.stem), f"suite file '{path}': name")
    seeds = _seed_list(raw.get("seeds", [0]), f"suite file '{path}': seeds")
    precision = raw.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise BenchmarkError(f"suite file '{path}': precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {precision!r}")
    evaluate = dict(EVALUATE_KEYS)
    if not isinstance(raw.get("evaluate", {}), dict):
        raise BenchmarkError(f"suite file '{path}': [evaluate] must be a table")
    extra = set(raw.get("evaluate", {})) - set(EVALUATE_KEYS) - {"seeds"}
    if extra:
        raise BenchmarkError(f"suite file '{path}': unknown [evaluate] key(s) {', '.join(sorted(extra))}")
    evaluate.update(raw.get("evaluate", {}))
    explain_seeds = evaluate.pop("seeds", None)
    if explain_seeds is not None:
        explain_seeds = _seed_list(explain_seeds, f"suite file '{path}': [evaluate] seeds")
        explain_seeds = _explained_of(explain_seeds, seeds, narrows, path)
    if evaluate["clips"] not in ("anomalous", "all"):
        raise BenchmarkError(f"suite file '{path}': [evaluate] clips must be 'anomalous' or 'all'")
    for key, least in EVALUATE_LEAST.items():
        if not _is_int(evaluate[key]) or evaluate[key] < least:
            raise BenchmarkError(f"suite file '{path}': [evaluate] {key} must be an integer >= {least}, "
                                 f"got {evaluate[key]!r}")
    datasets = _configs("dataset", raw["datasets"], path, trained=False)
    detectors = _configs("detector", raw["detectors"], path, trained=True)
    from .variants import suite_variants
    datasets += suite_variants(raw.get("filter_sweep"), raw.get("variants"), datasets, detectors, path,
                               raw.get("difficulty_sweep"))
    return Suite(
        name=name, path=path, seeds=tuple(seeds),
        datasets=tuple(datasets), detectors=tuple(detectors),
        explainers=tuple(_configs("explainer", raw["explainers"], path, trained=True)),
        metrics=tuple(_metric_configs(raw.get("metrics", "all"), raw.get("metric_params", {}),
                                      raw.get("metric_clips", {}), path)),
        evaluate=evaluate, files=files, precision=precision,
        explain_seeds=tuple(explain_seeds) if explain_seeds is not None else None,
    )


def _explained_of(explain_seeds: list[int], seeds: list[int], narrows: bool, path: Path) -> list[int]:
    """The explained seeds among `seeds`. A file that sets `seeds` over an included suite's `[evaluate] seeds`
    narrows them, as `--seeds` does (`include = "full"` with `seeds = [0]` explains seed 0); one file that lists
    an explained seed it does not train contradicts itself."""
    kept = [s for s in explain_seeds if s in seeds]
    if narrows:
        if not kept:
            raise BenchmarkError(f"suite file '{path}': seeds {seeds} include none of the explained seeds "
                                 f"{explain_seeds} ([evaluate] seeds of the included suite), so no explainer would "
                                 f"run; add one of them to seeds, or set [evaluate] seeds in this file")
        return kept
    outside = [s for s in explain_seeds if s not in seeds]
    if outside:
        raise BenchmarkError(f"suite file '{path}': [evaluate] seeds {outside} are not among the suite's "
                             f"seeds {seeds}: explained seeds are a subset of the trained ones")
    return kept


def _seed_list(seeds: Any, what: str) -> list[int]:
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
        raise BenchmarkError(f"{what} must be a non-empty list of non-negative integers")
    return list(dict.fromkeys(seeds))  # a repeated seed would run and count every cell twice


def _configs(kind: str, table: dict[str, Any], path: Path, *, trained: bool) -> list[PluginConfig]:
    out = []
    for name, params in table.items():
        if not isinstance(params, dict):
            raise BenchmarkError(f"suite file '{path}': [{kind}s.{name}] must be a table of parameters")
        params = dict(params)
        budget = None
        if trained:
            budget = _budget(params.pop("budget", {}), f"{path} [{kind}s.{name}]")
        only = _only_detectors(params.pop("detectors"), f"{path} [{kind}s.{name}]") \
            if kind == "explainer" and "detectors" in params else None
        clips = params.pop("max_clips", None) if kind == "explainer" else None
        if clips is not None and (not _is_int(clips) or clips < 1):
            raise BenchmarkError(f"suite file '{path}' [explainers.{name}]: max_clips must be an integer >= 1, "
                                 f"got {clips!r}")
        plugin = registry(kind).get(name)
        _check_params(plugin, params, path)
        out.append(PluginConfig(kind, name, params, budget, only, max_clips=clips))
    return out


def _only_detectors(names: Any, where: str) -> tuple[str, ...]:
    """An explainer's `detectors = [...]` list: registered detector names."""
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BenchmarkError(f"{where}: detectors must be a non-empty list of detector names")
    for n in names:
        registry("detector").get(n)  # unknown -> did-you-mean error
    return tuple(names)


def _metric_configs(spec: Any, overrides: dict[str, Any], clips: dict[str, Any], path: Path) -> list[PluginConfig]:
    reg = registry("metric")
    if spec == "all":
        spec = {n: {} for n in reg.names()}
    elif isinstance(spec, list):
        spec = {n: {} for n in spec}
    if not isinstance(spec, dict):
        raise BenchmarkError(f"suite file '{path}': metrics must be \"all\", a list of names or a table")
    for name in overrides:
        reg.get(name)
        if name not in spec:
            raise BenchmarkError(f"suite file '{path}': [metric_params.{name}] names a metric the suite does not run")
    if not isinstance(clips, dict):
        raise BenchmarkError(f"suite file '{path}': [metric_clips] must be a table of metric or family = clips")
    families = {reg.get(n).spec.family for n in spec}
    for name, count in clips.items():
        if name not in spec and name not in families:
            raise BenchmarkError(f"suite file '{path}': [metric_clips] {name!r} is neither a metric nor a family "
                                 f"of the suite (families: {', '.join(sorted(families))})")
        if not _is_int(count) or count < 1:
            raise BenchmarkError(f"suite file '{path}': [metric_clips] {name} must be an integer >= 1, got {count!r}")
    out = []
    for name, params in spec.items():
        params = {**dict(params), **dict(overrides.get(name, {}))}
        plugin = reg.get(name)
        _check_params(plugin, params, path)
        budget = clips.get(name, clips.get(plugin.spec.family))
        out.append(PluginConfig("metric", name, params, max_clips=budget))
    return out


def _budget(raw: dict[str, Any], where: str) -> Budget:
    from .detector import Budget
    allowed = set(Budget.__dataclass_fields__)
    unknown = set(raw) - allowed
    if unknown:
        raise BenchmarkError(f"{where}: unknown budget key(s) {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(sorted(allowed))}")
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{where}: budget must be a table like {{ epochs = 10, batch_size = 32 }}")
    for key, least in BUDGET_LEAST.items():
        value = raw.get(key)
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (key not in REAL_BUDGET_KEYS and not _is_int(value)) or value < least:
            kind = "a number" if key in REAL_BUDGET_KEYS else "an integer"
            raise BenchmarkError(f"{where}: budget {key} must be {kind} >= {least}, got {value!r}")
    return Budget(**raw)


BUDGET_LEAST = {"epochs": 1, "patience": 0, "batch_size": 1, "max_seconds": 1, "min_improvement": 0}
REAL_BUDGET_KEYS = ("max_seconds", "min_improvement")


def _check_params(plugin: Plugin, params: dict[str, Any], path: Path) -> None:
    """Every parameter is one the plugin takes, of the kind its default has (a number where the default is a
    number, text where it is text, true/false where it is a flag)."""
    sig = inspect.signature(plugin.factory)
    if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        accepted = [p for p in sig.parameters if p not in ("self", "ctx")]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise BenchmarkError(f"suite file '{path}': {plugin.kind} {plugin.name!r} has no parameter "
                                 f"{', '.join(map(repr, unknown))} (it takes: {', '.join(accepted) or 'none'})")
    for name, value in params.items():
        param = sig.parameters.get(name)
        default = None if param is None else param.default
        expected = _value_kind(default)
        if expected is not None and value is not None and _value_kind(value) not in (expected, None) \
                and not (expected == "number" and _value_kind(value) == "integer"):
            raise BenchmarkError(f"suite file '{path}': {plugin.kind} {plugin.name!r} parameter {name!r} takes "
                                 f"{'an' if expected[0] in 'aeiou' else 'a'} {expected} (default {default!r}), "
                                 f"got {value!r}")


def _value_kind(value: Any) -> str | None:
    """The kind of a plain parameter value, or None for anything else (lists, tables, None, objects)."""
    if isinstance(value, bool):
        return "flag"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


def check_datasets(suite: Suite) -> None:
    """Build every dataset of the suite once (its plan only, no audio): a size it does not know, a bad
    difficulty or a missing data root is rejected before any cell runs."""
    from .variants import generation_config, with_variant
    for ds in suite.datasets:
        made = generation_config(ds)
        with_variant(registry("dataset").make(made.name, **made.params), ds)


def narrow(suite: Suite, *, datasets: list[str] | None = None, detectors: list[str] | None = None,
           explainers: list[str] | None = None, seeds: list[int] | None = None) -> Suite:
    """Keep only the named plugins/seeds (CLI filters); every name must be registered and in the suite. The
    rest of the suite (precision, explained seeds, evaluate settings) is kept as it is."""
    from dataclasses import replace

    def keep(kind: str, configs: tuple[PluginConfig, ...], names: list[str] | None) -> tuple[PluginConfig, ...]:
        if not names:
            return configs
        have = [c.name for c in configs]
        for n in names:
            registry(kind).get(n)  # unknown plugin -> did-you-mean error
            if n not in have:
                raise BenchmarkError(f"{kind} {n!r} is not in suite {suite.name!r} (it has: {', '.join(have)})")
        return tuple(c for c in configs if c.name in names)

    if seeds:
        missing = [s for s in seeds if s not in suite.seeds]
        if missing:
            raise BenchmarkError(f"seed(s) {missing} not in suite {suite.name!r} (it has: {list(suite.seeds)})")
    return replace(suite, seeds=tuple(seeds) if seeds else suite.seeds,
                   datasets=keep("dataset", suite.datasets, datasets),
                   detectors=keep("detector", suite.detectors, detectors),
                   explainers=keep("explainer", suite.explainers, explainers))


def extend(suite: Suite, *, detectors: list[str] | None = None, explainers: list[str] | None = None,
           metrics: list[str] | None = None) -> Suite:
    """Add registered plugins to a suite with their default parameters (CLI `--add-*`): trying one explainer
    needs no TOML. Detectors and trained explainers get the default budget; a name the suite already has is
    an error (the suite's own configuration would be ambiguous)."""
    from dataclasses import replace

    def added(kind: str, configs: tuple[PluginConfig, ...], names: list[str] | None) -> tuple[PluginConfig, ...]:
        have = {c.name for c in configs}
        for n in names or []:
            registry(kind).get(n)  # unknown plugin -> did-you-mean error
            if n in have:
                raise BenchmarkError(f"--add-{kind}s: {kind} {n!r} is already in suite {suite.name!r}")
        new = [PluginConfig(kind, n, {}, _budget({}, f"--add-{kind}s {n}") if kind != "metric" else None)
               for n in dict.fromkeys(names or [])]
        return configs + tuple(new)

    return replace(suite, detectors=added("detector", suite.detectors, detectors),
                   explainers=added("explainer", suite.explainers, explainers),
                   metrics=added("metric", suite.metrics, metrics))
