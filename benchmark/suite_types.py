"""What a loaded suite is: the plugins it chose with their parameters (`PluginConfig`) and the suite itself
(`Suite`). Cells hash these, so this module is in every cell key's import closure; reading and validating suite
files (`benchmark/suites.py`) is not, and a change there (a message, a new check) re-keys nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import Plugin, registry

if TYPE_CHECKING:  # the detector module imports torch; `run` replays without it
    from .detector import Budget


@dataclass(frozen=True)
class PluginConfig:
    """A plugin chosen by a suite with its parameters (and, for trained plugins, a budget)."""

    kind: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    budget: Budget | None = None
    # an explainer limited to these detectors (suite key `detectors = [...]`); None = every detector
    only_detectors: tuple[str, ...] | None = None
    # a metric computed on a seeded subset of this many of the cell's clips (`[metric_clips]`), or an explainer
    # run on at most this many clips (its `max_clips`, below `[evaluate]`'s: a nested seeded subset); None = all
    max_clips: int | None = None
    # a dataset variant (`[filter_sweep]`, `[[variants]]`): how its waveforms or features are changed, as sorted
    # (key, value) pairs (see `benchmark/variants.py`); () = the dataset as its plugin makes it
    variant: tuple[tuple[str, Any], ...] = ()
    # a dataset variant that only trains and scores its detectors (no explanations): the filter sweep
    train_only: bool = False

    @property
    def label(self) -> str:
        """The name tables and records show: the plugin's, with the variant after a dot
        (`synthetic-machines.lowpass-400hz`)."""
        if not self.variant:
            return self.name
        from .variants import variant_suffix
        return f"{self.name}.{variant_suffix(dict(self.variant))}"

    @property
    def plugin(self) -> Plugin:
        return registry(self.kind).get(self.name)

    def identity(self) -> dict[str, Any]:
        """What the cell key hashes: name, params, budget, plugin version, source hash and the hash of the
        plugin's `content_inputs(params)` where it has them."""
        p = self.plugin
        out: dict[str, Any] = {"name": self.name, "params": self.params, "version": p.version,
                               "source": p.source_hash()}
        # files outside the source that shape the plugin's output, like a synthetic dataset's recipe
        content_inputs = getattr(p.factory, "content_inputs", None)
        if content_inputs is not None:
            out["inputs"] = sha256(content_inputs(self.params)).hexdigest()[:16]
        if self.budget is not None:
            out["budget"] = vars(self.budget)
        if self.max_clips is not None:
            out["max_clips"] = self.max_clips
        if self.variant:
            out["variant"] = dict(self.variant)
        return out


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    seeds: tuple[int, ...]
    datasets: tuple[PluginConfig, ...]
    detectors: tuple[PluginConfig, ...]
    explainers: tuple[PluginConfig, ...]
    metrics: tuple[PluginConfig, ...]
    evaluate: dict[str, Any]
    # the files the suite was read from: its own, then the suites it includes
    files: tuple[Path, ...] = ()
    # of detector and explainer forward passes (`benchmark.compute`): "fp32" or "bf16"; part of every cell key
    precision: str = "fp32"
    # the detector seeds whose detectors are explained (`[evaluate] seeds`); None: every seed
    explain_seeds: tuple[int, ...] | None = None

    def explained(self, seed: int) -> bool:
        return self.explain_seeds is None or seed in self.explain_seeds

    def file_hash(self) -> str:
        if len(self.files) <= 1:
            return sha256(self.path.read_bytes()).hexdigest()[:16]
        return sha256(b"\0".join(f.read_bytes() for f in self.files)).hexdigest()[:16]
