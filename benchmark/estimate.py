"""What a suite will cost before it runs: seconds per cell from measured reference rates.

The rates (`cost_reference.json`) come from a measured `cost.csv` (by default the committed
`leaderboards/quick/cost.csv`, 2 CPU cores of the project's reference machine), in three kinds:
- detector training: seconds per (epoch run x train clip x frame) per detector;
- interpreter training (`lmac_td`, `lmac`, the EnCodec codec): seconds per (epoch run x training clip x
  frame) per (detector, explainer), from the cells that trained one (`fit_s`, `fit_clip_epochs`);
- evaluation: seconds per (explained clip x frame) per (detector, explainer), interpreter training taken out.
A suite's cells are priced by the same units: budget epochs (a cap: early stopping only makes it cheaper),
the dataset's clip counts and frames per clip, the explainer's work parameters (samples, steps) and its
training clip budget; an interpreter shared by several cells (the codec learns without the detector) is
priced once. Plugins absent from the reference are priced at the median rate of their kind, and the
estimate says so. The run uses these prices to print the suite's cost before it starts and to weight its ETA.

`python -m benchmark.estimate COST_CSV SUITE` rewrites the reference from a cost.csv and the suite it ran.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .cells import EvaluateCell, TrainCell, expand
from .suites import Suite

REFERENCE_FILE = Path(__file__).with_name("cost_reference.json")
# explainer parameters that multiply its work (samples, steps): rates scale by suite value / reference value
WORK_PARAMS = ("n_samples", "nt_samples", "n_steps")
VALIDATION_SHARE = 0.1  # of an interpreter's training clips, held out (see `_interpreter`, `_codec`)
# fallback when a dataset cannot count its clips without reading them (data on disk)
DEFAULT_COUNTS = {"train": 1000, "test": 200, "test_anomalous": 100, "frames": 313}


@dataclass
class Estimate:
    seconds: dict[str, float] = field(default_factory=dict)  # cell key -> expected seconds
    by_kind: dict[str, float] = field(default_factory=dict)  # "train" / "evaluate" -> seconds
    unpriced: set[str] = field(default_factory=set)  # plugins priced at the median rate

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    def summary(self, device: str) -> str:
        parts = ", ".join(f"{k} {_duration(v)}" for k, v in self.by_kind.items())
        line = (f"estimated {_hours(self.total_s)} CPU-hours on 2 cores ({parts}; training at its epoch caps), "
                f"running on {device}")
        if self.unpriced:
            line += f"; no measured rate for {', '.join(sorted(self.unpriced))} (priced at the median)"
        return line


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}" if seconds >= 36 else "<0.01"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def reference() -> dict[str, Any]:
    return json.loads(REFERENCE_FILE.read_text())


def dataset_counts(config) -> dict[str, int]:
    """Train / test / anomalous-test clip counts and frames per clip of a suite's dataset, without audio (a
    variant's from its base dataset, built once however many variants share it)."""
    from .variants import variant_spec
    out = dict(_base_counts(config.name, json.dumps(config.params, sort_keys=True, default=str)))
    spec = out.pop("spec")
    out["frames"] = int(variant_spec(spec, dict(config.variant)).n_frames)
    return out


@lru_cache(maxsize=64)
def _base_counts(name: str, params: str) -> dict:
    from .registry import registry
    dataset = registry("dataset").make(name, **json.loads(params))
    counts = dataset.counts() if hasattr(dataset, "counts") else None
    out = dict(DEFAULT_COUNTS)
    if counts:
        out.update(counts)
    out["spec"] = dataset.spec
    return out


def estimate_suite(suite: Suite, ref: dict[str, Any] | None = None) -> Estimate:
    ref = ref or reference()
    trains, evals = expand(suite)
    counts = {ds.label: dataset_counts(ds) for ds in suite.datasets}
    est = Estimate()
    for cell in trains:
        est.seconds[cell.key] = _train_seconds(cell, counts[cell.dataset.label], ref, est.unpriced)
        est.by_kind["train"] = est.by_kind.get("train", 0.0) + est.seconds[cell.key]
    fitted: set[str] = set()
    for cell in evals:
        n = counts[cell.train.dataset.label]
        seconds = _evaluate_seconds(cell, n, ref, est.unpriced)
        est.by_kind["evaluate"] = est.by_kind.get("evaluate", 0.0) + seconds
        if cell.explainer.plugin.factory.trains and cell.interpreter_key not in fitted:
            fitted.add(cell.interpreter_key)  # the first cell of an interpreter trains it
            fit = _fit_seconds(cell, n, ref, est.unpriced)
            est.by_kind["interpreter training"] = est.by_kind.get("interpreter training", 0.0) + fit
            seconds += fit
        est.seconds[cell.key] = seconds
    return est


def _rate(rates: dict[str, float], det: str, ex: str, unpriced: set[str]) -> float:
    """The measured rate of (det, ex), else the median of `ex` over detectors, else of every pair."""
    rate = rates.get(f"{det}/{ex}")
    if rate is None:
        same = [v for k, v in rates.items() if k.endswith(f"/{ex}")]
        if not same:
            unpriced.add(ex)
        rate = statistics.median(same or rates.values())
    return rate


def _train_seconds(cell: TrainCell, n: dict[str, int], ref: dict[str, Any], unpriced: set[str]) -> float:
    rates = ref["train"]
    rate = rates.get(cell.detector.name)
    if rate is None:
        unpriced.add(cell.detector.name)
        rate = statistics.median(rates.values())
    epochs = cell.detector.budget.epochs if cell.detector.budget is not None else 1
    return rate * epochs * n["train"] * n["frames"]


def _evaluate_seconds(cell: EvaluateCell, n: dict[str, int], ref: dict[str, Any], unpriced: set[str]) -> float:
    ex = cell.explainer.name
    rate = _rate(ref["evaluate"], cell.train.detector.name, ex, unpriced)
    defaults = cell.explainer.plugin.defaults
    for name in WORK_PARAMS:
        ref_value = ref.get("explainer_params", {}).get(ex, {}).get(name, defaults.get(name))
        value = cell.explainer.params.get(name, defaults.get(name))
        if isinstance(value, (int, float)) and isinstance(ref_value, (int, float)) and ref_value > 0:
            rate *= value / ref_value
    pool = n["test_anomalous"] if dict(cell.evaluate)["clips"] == "anomalous" else n["test"]
    clips = min(pool, int(dict(cell.evaluate)["max_clips"]))
    return rate * clips * n["frames"]


def _fit_seconds(cell: EvaluateCell, n: dict[str, int], ref: dict[str, Any], unpriced: set[str]) -> float:
    """A trained interpreter's training: its budget's epoch cap over its training clips (the clip budget
    `train_clips` of the normal training clips, less the validation share)."""
    rate = _rate(ref.get("fit", {}) or {"-/-": 0.0}, cell.train.detector.name, cell.explainer.name, unpriced)
    epochs = cell.explainer.budget.epochs if cell.explainer.budget is not None else 100
    budget = cell.explainer.params.get("train_clips", cell.explainer.plugin.defaults.get("train_clips"))
    clips = n["train"] if not isinstance(budget, int) else min(budget, n["train"])
    return rate * epochs * clips * (1 - VALIDATION_SHARE) * n["frames"]


def build_reference(cost_csv: Path, suite: Suite) -> dict[str, Any]:
    """Rates from a measured cost.csv of `suite` (per-cell wall seconds; detector epochs as run)."""
    import pandas as pd
    cost = pd.read_csv(cost_csv)
    frames = {ds.label: dataset_counts(ds)["frames"] for ds in suite.datasets}
    train = cost[cost.cell == "train"]
    units = train.epochs * train.n_train * train.dataset.map(frames)
    rates_train = (train.wall_s.groupby(train.detector).sum() / units.groupby(train.detector).sum()).to_dict()
    ev = cost[cost.cell == "evaluate"]
    fit_s = ev.fit_s.fillna(0.0)
    pair = ev.detector + "/" + ev.explainer
    units = ev.n_clips * ev.dataset.map(frames)
    rates_eval = ((ev.wall_s - fit_s).groupby(pair).sum() / units.groupby(pair).sum()).to_dict()
    fitted = ev[fit_s > 0]
    units = fitted.fit_clip_epochs * fitted.dataset.map(frames)
    fit_pair = fitted.detector + "/" + fitted.explainer
    rates_fit = (fitted.fit_s.groupby(fit_pair).sum() / units.groupby(fit_pair).sum()).to_dict()
    return {"source": str(cost_csv), "machine": "2 CPU cores (AVX2), the project's reference machine",
            "train": {k: float(v) for k, v in sorted(rates_train.items())},
            "explainer_params": {e.name: {**{k: v for k, v in e.plugin.defaults.items() if k in WORK_PARAMS},
                                          **{k: v for k, v in e.params.items() if k in WORK_PARAMS}}
                                 for e in suite.explainers},
            "fit": {k: float(v) for k, v in sorted(rates_fit.items())},
            "evaluate": {k: float(v) for k, v in sorted(rates_eval.items())}}


if __name__ == "__main__":
    import sys

    from .suites import load_suite
    data = build_reference(Path(sys.argv[1]), load_suite(sys.argv[2]))
    REFERENCE_FILE.write_text(json.dumps(data, indent=1) + "\n")
    print(REFERENCE_FILE)
