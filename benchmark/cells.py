"""Cells, the unit of work and of caching: `train(dataset, detector, seed)` and
`evaluate(dataset, detector, seed, explainer)`, the latter made of parts that are cached on their own: one
explain part (the stored explanations) and one metric part per metric.

Every key hashes its resolved configuration, the `version` and import closure of every plugin involved,
the seed, the engine's cell-format version and the import closure of the engine module that computes it
(`training.py` for train cells, `explain_step.py` for explanations, `evaluation.py` for metric values):
editing the training loop retrains, editing one metric recomputes only that metric's parts over the stored
explanations, and editing the report or the driver re-keys nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, cached_property
from hashlib import sha256
from pathlib import Path
from typing import Any

from .needs import explainer_unmet
from .registry import closure_hash
from .suite_types import PluginConfig, Suite

ENGINE_VERSION = 2
HERE = Path(__file__).resolve().parent


def content_key(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return sha256(blob.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TrainCell:
    dataset: PluginConfig
    detector: PluginConfig
    seed: int
    # of the forward passes of training and of the explainers evaluated on it (`benchmark.compute`)
    precision: str = "fp32"

    @cached_property
    def key(self) -> str:
        """Computed once per cell, so an adapter edited during a run cannot move the cell's key."""
        return content_key({"cell": "train", "engine": ENGINE_VERSION, "code": engine_hash("training.py"),
                            "dataset": self.dataset.identity(), "detector": self.detector.identity(),
                            "seed": self.seed, "precision": self.precision})

    @property
    def label(self) -> str:
        return f"train {self.dataset.label} / {self.detector.name} / seed {self.seed}"

    def describe(self) -> dict[str, Any]:
        """The identifying fields every record of this cell carries."""
        return {"cell": "train", "label": self.label, "dataset": self.dataset.label, "detector": self.detector.name,
                "seed": self.seed}


@dataclass(frozen=True)
class EvaluateCell:
    train: TrainCell
    explainer: PluginConfig
    metrics: tuple[PluginConfig, ...]
    evaluate: tuple[tuple[str, Any], ...]

    @cached_property
    def interpreter_key(self) -> str:
        """Key of what the explainer learns (trained interpreters), independent of the metrics; an
        interpreter that learns without the detector is keyed by the dataset and seed instead."""
        if not self.explainer.plugin.spec.fit_uses_detector:
            fitted_on = {"engine": ENGINE_VERSION, "dataset": self.train.dataset.identity(), "seed": self.train.seed}
            return content_key({"cell": "interpreter", "data": fitted_on, "explainer": self.explainer.identity()})
        return content_key({"cell": "interpreter", "train": self.train.key, "explainer": self.explainer.identity()})

    @cached_property
    def explain_key(self) -> str:
        """Key of the stored explanations: the train cell, the explainer and the clip selection, no metric."""
        return content_key({"cell": "explain", "engine": ENGINE_VERSION, "code": engine_hash("explain_step.py"),
                            "train": self.train.key, "explainer": self.explainer.identity(),
                            "interpreter": self.interpreter_key, "evaluate": dict(self.evaluate)})

    @cached_property
    def metric_keys(self) -> tuple[str, ...]:
        """Key of each metric's values over the stored explanations, in suite order."""
        code = engine_hash("evaluation.py")
        return tuple(content_key({"cell": "metric", "engine": ENGINE_VERSION, "code": code,
                                  "explain": self.explain_key, "metric": m.identity()}) for m in self.metrics)

    @cached_property
    def key(self) -> str:
        return content_key({"cell": "evaluate", "engine": ENGINE_VERSION, "explain": self.explain_key,
                            "metrics": list(self.metric_keys)})

    @property
    def label(self) -> str:
        t = self.train
        return f"evaluate {t.dataset.label} / {t.detector.name} / {self.explainer.name} / seed {t.seed}"

    def describe(self) -> dict[str, Any]:
        t = self.train
        return {"cell": "evaluate", "label": self.label, "dataset": t.dataset.label, "detector": t.detector.name,
                "explainer": self.explainer.name, "seed": t.seed, "train_key": t.key,
                "interpreter_key": self.interpreter_key, "explain_key": self.explain_key}


@cache
def engine_hash(module: str) -> str:
    """Import closure hash of an engine module (`benchmark/<module>`), once per process: a cell's key cannot
    move while a run is under way."""
    return closure_hash(HERE / module)


def inapplicable(explainer: PluginConfig, detector: PluginConfig, dataset_provides: set[str]) -> str | None:
    """Why an explainer cannot run on this detector and dataset, or None when it can."""
    return explainer_unmet(explainer.name, explainer.plugin.needs, detector.name, detector.plugin.capabilities,
                           dataset_provides)


def _clips_of(explainer: PluginConfig, settings: dict[str, Any], default: tuple[tuple[str, Any], ...]
              ) -> tuple[tuple[str, Any], ...]:
    """The `[evaluate]` settings of an explainer's cells: its own `max_clips` where it is below the suite's (the
    first clips of the same seeded shuffle, so its clips are a subset of every other explainer's)."""
    if explainer.max_clips is None or explainer.max_clips >= settings["max_clips"]:
        return default
    return tuple(sorted({**settings, "max_clips": explainer.max_clips}.items()))


def expand(suite: Suite) -> tuple[list[TrainCell], list[EvaluateCell]]:
    """Every (dataset, detector, seed) train cell and every (…, explainer) evaluate cell, in suite order; a
    dataset variant with `only_detectors` trains only those, a `train_only` one (the filter sweep) explains
    nothing, and a seed outside the suite's `[evaluate] seeds` trains and scores only."""
    trains, evals = [], []
    evaluate = tuple(sorted(suite.evaluate.items()))
    for ds in suite.datasets:
        for det in suite.detectors:
            if ds.only_detectors is not None and det.name not in ds.only_detectors:
                continue
            for seed in suite.seeds:
                t = TrainCell(ds, det, seed, suite.precision)
                trains.append(t)
                if ds.train_only or not suite.explained(seed):
                    continue
                evals.extend(EvaluateCell(t, ex, suite.metrics, _clips_of(ex, suite.evaluate, evaluate))
                             for ex in suite.explainers
                             if ex.only_detectors is None or det.name in ex.only_detectors)
    return trains, evals
