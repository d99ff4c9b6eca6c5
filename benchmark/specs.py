"""The frozen metadata of each plugin kind, validated when the plugin registers.

`Registry.register(name, summary=..., version=..., **declared)` builds the kind's spec from `declared`: a key
the spec does not have, a need or capability nobody resolves, a metric without a family or direction, or a
factory that is not of the kind's base class is a one-line error at import, naming the plugin. What a class
already says about itself (an explainer's `trains` and `fit_uses_detector`) is read from the class. The
constructor's defaults are not metadata: `Plugin.defaults` reads them from the factory's signature.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import BenchmarkError
from .needs import DETECTOR_CAPABILITIES, Need, parse_needs

FAMILIES = ("faithfulness", "deletion", "localisation", "temporal", "sanity", "robustness", "complexity", "lmac",
            "synthesis", "audio_quality", "other")  # other: a metric that fits none of the rest


class ContractError(BenchmarkError, ValueError):
    """A registration that breaks the plugin contract (unknown key, need or base class)."""


def _test_params(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"test_params must be a dict of constructor arguments, got {value!r}")
    return dict(value)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}={value!r}; declare True or False")
    return value


@dataclass(frozen=True)
class MetricSpec:
    """family: the leaderboard section; higher_is_better: the direction ranks follow; params: what a value's
    `param` is (the value axis: "percentile", "mode", ...; None = one value per clip); headline: the params the
    rankings use (default: see `statistics`); ranked: False keeps it out of the rankings (published for parity);
    stochastic: values may differ for the same generator seed; test_params: settings for `check` only."""

    family: str
    higher_is_better: bool
    needs: frozenset[Need] = frozenset()
    params: str | None = None
    headline: tuple[str, ...] = ()
    ranked: bool = True
    stochastic: bool = False
    test_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r}; declare one of {', '.join(FAMILIES)}")
        _flag("higher_is_better", self.higher_is_better)
        if self.params is not None and not isinstance(self.params, str):
            raise ValueError(f"params={self.params!r}; name the value axis (\"percentile\", \"mode\", ...) or omit it")
        headline = (self.headline,) if isinstance(self.headline, str) else tuple(self.headline)
        object.__setattr__(self, "headline", headline)
        object.__setattr__(self, "needs", parse_needs(self.needs, "metric"))
        _flag("ranked", self.ranked)
        _flag("stochastic", self.stochastic)
        object.__setattr__(self, "test_params", _test_params(self.test_params))


@dataclass(frozen=True)
class ExplainerSpec:
    """needs: what the detector, dataset or explainer itself must offer (`training` whenever the class trains);
    stochastic: the map depends on the
    generator; trains / fit_uses_detector: read from the class; reference_sizes: the paper's sizes where the
    defaults are smaller (documentation); test_params: settings for `check` only."""

    needs: frozenset[Need] = frozenset()
    stochastic: bool = False
    trains: bool = False
    fit_uses_detector: bool = True
    reference_sizes: dict[str, Any] = field(default_factory=dict)
    test_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", parse_needs(self.needs, "explainer"))
        _flag("stochastic", self.stochastic)
        object.__setattr__(self, "test_params", _test_params(self.test_params))
        if Need.TRAINING in self.needs and not self.trains:
            raise ValueError("needs 'training' but its class does not set trains = True (and implement fit)")
        if self.trains:  # a class that trains needs training, declared or not
            object.__setattr__(self, "needs", self.needs | {Need.TRAINING})


@dataclass(frozen=True)
class DetectorSpec:
    """capabilities: what the detector offers beyond `score` (`reconstructs`, `layers`, `embeds`);
    test_params: settings for `check` only."""

    capabilities: frozenset[str] = frozenset()
    test_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.capabilities) - DETECTOR_CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown capability {unknown[0]!r}; a detector may declare "
                             f"{', '.join(sorted(DETECTOR_CAPABILITIES))}")
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        object.__setattr__(self, "test_params", _test_params(self.test_params))


@dataclass(frozen=True)
class DatasetSpec:
    """capabilities: the dataset needs its clips can meet (`waveform`, `tf_mask`, `intervals`, `audio`; an
    instance meets those its files hold); layout: the folder layout `data synth` writes by default;
    test_params: settings for `check` only."""

    capabilities: frozenset[Need] = frozenset()
    layout: str | None = None
    test_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", parse_needs(self.capabilities, "dataset"))
        object.__setattr__(self, "test_params", _test_params(self.test_params))


PluginSpec = MetricSpec | ExplainerSpec | DetectorSpec | DatasetSpec
SPECS: dict[str, type] = {"dataset": DatasetSpec, "detector": DetectorSpec, "explainer": ExplainerSpec,
                          "metric": MetricSpec}
FROM_CLASS = {"explainer": ("trains", "fit_uses_detector")}  # spec fields the factory's class states itself
BASES = {"dataset": ("benchmark.dataset", "Dataset"), "detector": ("benchmark.detector", "Detector"),
         "explainer": ("benchmark.explainer", "Explainer")}


def declarable(kind: str) -> list[str]:
    """The registration keys a plugin of `kind` may pass besides `summary` and `version`."""
    return [f.name for f in fields(SPECS[kind]) if f.name not in FROM_CLASS.get(kind, ())]


def check_keys(kind: str, name: str, declared: dict[str, Any]) -> None:
    """ContractError for the first key of `declared` the kind's spec does not have."""
    allowed = declarable(kind)
    for key in sorted(declared):
        if key in allowed:
            continue
        if key == "defaults":
            raise ContractError(f"{kind} {name!r}: drop defaults=, they are read from the factory's signature")
        if key in FROM_CLASS.get(kind, ()):
            raise ContractError(f"{kind} {name!r}: {key} is read from the class; set it there instead of "
                                "in the registration")
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ContractError(f"{kind} {name!r}: unknown registration key {key!r}{hint}; allowed: summary, version, "
                            f"{', '.join(allowed)}")


def build_spec(kind: str, name: str, factory: Callable[..., Any], declared: dict[str, Any]) -> PluginSpec:
    """The kind's spec of `factory` from its registration keys (checked by `check_keys`) and its class."""
    check_factory(kind, name, factory)
    from_class = {key: getattr(factory, key) for key in FROM_CLASS.get(kind, ())}
    try:
        return SPECS[kind](**declared, **from_class)
    except (TypeError, ValueError) as exc:
        raise ContractError(f"{kind} {name!r}: {_one_line(exc)}") from None


def check_factory(kind: str, name: str, factory: Callable[..., Any]) -> None:
    """ContractError unless `factory` is a subclass of the kind's base class (a metric: a function of a
    MetricContext, its parameters keyword arguments with defaults)."""
    if kind == "metric":
        if inspect.isclass(factory) or not callable(factory):
            raise ContractError(f"metric {name!r}: register a function (ctx: MetricContext, **params) -> "
                                f"MetricResult, not {factory!r}")
        params = list(inspect.signature(factory).parameters.values())
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise ContractError(f"metric {name!r}: its first parameter must take the MetricContext (ctx)")
        return
    module, base_name = BASES[kind]
    base = getattr(importlib.import_module(module), base_name)
    if not (inspect.isclass(factory) and issubclass(factory, base)):
        raise ContractError(f"{kind} {name!r}: {getattr(factory, '__name__', factory)!s} must subclass "
                            f"{module}.{base_name}")


def signature_defaults(kind: str, factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's parameters that have defaults, by name (a metric's MetricContext argument excluded)."""
    params = list(inspect.signature(factory).parameters.values())
    if kind == "metric":
        params = params[1:]
    return {p.name: p.default for p in params
            if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def declared_fields(spec: PluginSpec | None) -> dict[str, Any]:
    """The spec's fields that differ from their defaults, except needs and capabilities: what a listing shows."""
    if spec is None:
        return {}
    out = {}
    for f in fields(spec):
        if f.name in ("needs", "capabilities"):
            continue
        value = getattr(spec, f.name)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if default is MISSING or value != default:
            out[f.name] = value
    return out


def _one_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # a missing required field: "__init__() missing 1 required positional argument: 'family'"
    if isinstance(exc, TypeError) and "required" in text:
        missing = text.split(":")[-1].strip()
        return f"declare {missing} in the registration"
    if isinstance(exc, TypeError) and "unexpected keyword" in text:
        return text.split("__init__() ")[-1]
    return text
