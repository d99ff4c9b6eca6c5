"""Cells, the unit of work and of caching: `train(dataset, detector, seed)` and
`evaluate(dataset, detector, seed, explainer)`.

A cell's key hashes its resolved configuration, the `version` and source-file hash of every plugin
involved, the seed and the engine's own cell-format version, so editing one adapter invalidates
exactly the cells that use it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from hashlib import sha256
from pathlib import Path
from typing import Any

from .suites import PluginConfig, Suite

ENGINE_VERSION = 1
NEED_TO_CAPABILITY = {"reconstruction": "reconstructs", "layers": "layers", "embedding": "embeds"}
DATASET_NEEDS = {"waveform", "tf_mask", "intervals", "audio"}


def content_key(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return sha256(blob.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TrainCell:
    dataset: PluginConfig
    detector: PluginConfig
    seed: int

    @cached_property
    def key(self) -> str:
        """Computed once per cell, so an adapter edited during a run cannot move the cell's key."""
        return content_key({"cell": "train", "engine": ENGINE_VERSION, "dataset": self.dataset.identity(),
                            "detector": self.detector.identity(), "seed": self.seed})

    @property
    def label(self) -> str:
        return f"train {self.dataset.name} / {self.detector.name} / seed {self.seed}"

    def describe(self) -> dict[str, Any]:
        """The identifying fields every record of this cell carries."""
        return {"cell": "train", "label": self.label, "dataset": self.dataset.name, "detector": self.detector.name,
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
        if not getattr(self.explainer.plugin.factory, "fit_uses_detector", True):
            fitted_on = {"engine": ENGINE_VERSION, "dataset": self.train.dataset.identity(), "seed": self.train.seed}
            return content_key({"cell": "interpreter", "data": fitted_on, "explainer": self.explainer.identity()})
        return content_key({"cell": "interpreter", "train": self.train.key, "explainer": self.explainer.identity()})

    @cached_property
    def key(self) -> str:
        return content_key({"cell": "evaluate", "engine": ENGINE_VERSION, "train": self.train.key,
                            "explainer": self.explainer.identity(),
                            "metrics": [m.identity() for m in self.metrics],
                            "evaluate": dict(self.evaluate), "metric_engine": _metric_engine_hash()})

    @property
    def label(self) -> str:
        t = self.train
        return f"evaluate {t.dataset.name} / {t.detector.name} / {self.explainer.name} / seed {t.seed}"

    def describe(self) -> dict[str, Any]:
        t = self.train
        return {"cell": "evaluate", "label": self.label, "dataset": t.dataset.name, "detector": t.detector.name,
                "explainer": self.explainer.name, "seed": t.seed, "train_key": t.key,
                "interpreter_key": self.interpreter_key}


def _metric_engine_hash() -> str:
    """The metric context and evaluation loop shape every metric value."""
    here = Path(__file__).resolve().parent
    h = sha256()
    for name in ("metrics/context.py", "evaluation.py", "features.py", "detector.py"):
        path = here / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def inapplicable(explainer: PluginConfig, detector: PluginConfig, dataset_caps: set[str]) -> str | None:
    """Why an explainer cannot run on this detector and dataset, or None when it can."""
    needs = explainer.plugin.needs
    caps = detector.plugin.capabilities
    for need in sorted(needs):
        cap = NEED_TO_CAPABILITY.get(need)
        if cap and cap not in caps:
            return f"{explainer.name} needs {need} but detector {detector.name} lacks capability {cap!r}"
        if need in DATASET_NEEDS and need not in dataset_caps:
            return f"{explainer.name} needs {need}, which the dataset does not provide"
    return None


def expand(suite: Suite) -> tuple[list[TrainCell], list[EvaluateCell]]:
    """Every (dataset, detector, seed) train cell and every (…, explainer) evaluate cell, in suite order."""
    trains, evals = [], []
    evaluate = tuple(sorted(suite.evaluate.items()))
    for ds in suite.datasets:
        for det in suite.detectors:
            for seed in suite.seeds:
                t = TrainCell(ds, det, seed)
                trains.append(t)
                evals.extend(EvaluateCell(t, ex, suite.metrics, evaluate) for ex in suite.explainers
                             if ex.only_detectors is None or det.name in ex.only_detectors)
    return trains, evals
