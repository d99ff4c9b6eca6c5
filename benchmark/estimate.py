"""What a suite will cost before it runs: seconds per cell from measured reference rates.

The rates (`cost_reference.json`) come from a measured run of a suite (by default the committed
`leaderboards/quick`: its `cost.csv` and the store it was published from), on 2 CPU cores of the project's
reference machine run as the README recommends (`--executor dask --workers 2 --threads 1`: two cells at a time,
one core each, so a cell's seconds are its wall time over the two cells that share the machine). Kinds:
- detector training: seconds per (epoch run x train clip x frame) per detector;
- interpreter training (`lmac_td`, `lmac`, the EnCodec codec): seconds per (epoch run x training clip x
  frame) per (detector, explainer), from the cells that trained one (`fit_s`, `fit_clip_epochs`);
- each metric: seconds per (clip it scored x frame) per (detector, explainer), at the reference suite's metric
  parameters (its own clip budget, `[metric_clips]`, decides how many clips it scored);
- the rest of evaluation (explaining, the shared scoring pass, loading): seconds per (explained clip x frame)
  per (detector, explainer).
A suite's cells are priced by the same units: budget epochs (a cap: early stopping only makes it cheaper),
the dataset's clip counts and frames per clip, the explainer's work parameters (samples, steps) and its
training clip budget, each metric's clip budget and work parameters (steps, perturbation samples; a metric
that re-runs the explainer, `REEXPLAINING`, also scales with the explainer's); an interpreter shared
by several cells (the codec learns without the detector) is priced once. A metric the reference computed
for some pair but not for this one does not apply to it (a synthesis metric on a gradient map) and costs
nothing; a metric or plugin absent from the reference is priced at the median rate of its kind, and the
estimate says so. The run uses these prices to print the suite's cost before it starts and to weight its ETA.

GPU-hours come from FLOPs, not from these rates: each detector's FLOPs per time-frequency bin of a forward
pass, an input-gradient pass and a training step (`benchmark.flops`, counted on the reference run's trained
detectors) times the passes each cell runs: training from its loop (`training.training_passes`), evaluation
from the measured passes per clip of each (detector, explainer) pair (explainer, metrics and the shared
scoring pass), an interpreter trained against the detector as one forward and input-gradient pass per training
clip and epoch. The
FLOPs divided by a sustained rate (`--gpu-tflops`, an assumption the user states: measure yours with
`tools/gpu_check.sh`) give the GPU-hours. Not counted: the interpreters' own networks, the EnCodec codec,
element-wise work, and an AST+kNN bank larger than the reference run's.

`python -m benchmark.estimate COST_CSV SUITE RUNS [CELLS_AT_ONCE]` rewrites the reference from a run's cost.csv,
the suite it ran and its store (metric seconds, detector FLOPs); CELLS_AT_ONCE (default 2) is how many cells
shared the 2 cores.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .cells import EvaluateCell, TrainCell, expand
from .suite_types import Suite

REFERENCE_FILE = Path(__file__).with_name("cost_reference.json")
# explainer parameters that multiply its work (samples, steps): rates scale by suite value / reference value
WORK_PARAMS = ("n_samples", "nt_samples", "n_steps")
# metric parameters that multiply a metric's work (cascade steps, deletion steps, perturbation samples)
METRIC_WORK_PARAMS = ("n_steps", "n_perturb_samples")
# metrics that run the explainer again per step or sample (`ctx.explain`): their work scales with the explainer's
REEXPLAINING = ("randomisation_spearman", "randomisation_ssim", "sensitivity_max")
VALIDATION_SHARE = 0.1  # of an interpreter's training clips, held out (see `_interpreter`, `_codec`)
# fallback when a dataset cannot count its clips without reading them (data on disk)
DEFAULT_COUNTS = {"train": 1000, "test": 200, "test_anomalous": 100, "frames": 313}
# sustained FLOP/s assumed for GPU-hours unless `--gpu-tflops` says otherwise: about a third of an H100's fp32
# peak (67 TFLOP/s); small batches of small models sit well below a GPU's peak. An assumption, not a measurement.
DEFAULT_GPU_TFLOPS = 20.0


@dataclass
class Estimate:
    seconds: dict[str, float] = field(default_factory=dict)  # cell key -> expected seconds
    by_kind: dict[str, float] = field(default_factory=dict)  # "train" / "evaluate" -> seconds
    unpriced: set[str] = field(default_factory=set)  # plugins priced at the median rate
    flops: dict[str, float] = field(default_factory=dict)  # cell key -> FLOPs of its detector passes
    gpu_tflops: float = DEFAULT_GPU_TFLOPS

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    @property
    def gpu_hours(self) -> float:
        return sum(self.flops.values()) / (self.gpu_tflops * 1e12) / 3600

    def summary(self, device: str) -> str:
        parts = ", ".join(f"{k} {_duration(v)}" for k, v in self.by_kind.items())
        line = (f"estimated {_hours(self.total_s)} CPU-hours on 2 cores ({parts}; training at its epoch caps), "
                f"running on {device}")
        if self.flops:
            line += (f"; on a GPU at least {self.gpu_hours:.3g} GPU-hours ({sum(self.flops.values()) / 1e15:.3g} PFLOP "
                     f"of detector passes at {self.gpu_tflops:g} TFLOP/s sustained, --gpu-tflops; the interpreters' "
                     f"and the codec's own networks not counted)")
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
    spec = variant_spec(spec, dict(config.variant))
    out["frames"] = int(spec.n_frames)
    out["bins"] = int(spec.n_frames) * int(spec.n_mels)
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


def estimate_suite(suite: Suite, ref: dict[str, Any] | None = None,
                   gpu_tflops: float = DEFAULT_GPU_TFLOPS) -> Estimate:
    ref = ref or reference()
    trains, evals = expand(suite)
    counts = {ds.label: dataset_counts(ds) for ds in suite.datasets}
    est = Estimate(gpu_tflops=gpu_tflops)
    flops = ref.get("flops")  # None: a reference without FLOPs gives no GPU figure
    for cell in trains:
        n = counts[cell.dataset.label]
        est.seconds[cell.key] = _train_seconds(cell, n, ref, est.unpriced)
        est.by_kind["train"] = est.by_kind.get("train", 0.0) + est.seconds[cell.key]
        if flops:
            est.flops[cell.key] = _train_flops(cell, n, flops, est.unpriced)
    fitted: set[str] = set()
    for cell in evals:
        n = counts[cell.train.dataset.label]
        seconds = _evaluate_seconds(cell, n, ref, est.unpriced)
        if flops:
            est.flops[cell.key] = _evaluate_flops(cell, n, ref, est.unpriced)
        est.by_kind["evaluate"] = est.by_kind.get("evaluate", 0.0) + seconds
        if cell.explainer.plugin.factory.trains and cell.interpreter_key not in fitted:
            fitted.add(cell.interpreter_key)  # the first cell of an interpreter trains it
            fit = _fit_seconds(cell, n, ref, est.unpriced)
            est.by_kind["interpreter training"] = est.by_kind.get("interpreter training", 0.0) + fit
            seconds += fit
            if flops and cell.explainer.plugin.spec.fit_uses_detector:  # the codec learns without it
                per_pass = _detector_flops(flops, cell.train.detector.name, est.unpriced)
                est.flops[cell.key] += (_fit_clip_epochs(cell, n) * n["bins"]
                                        * (per_pass["forward"] + per_pass["backward_input"]))
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


def _work_factor(cell: EvaluateCell, ref: dict[str, Any]) -> float:
    """How much more work the cell's explainer parameters (samples, steps) ask than the reference run's."""
    ex, factor = cell.explainer.name, 1.0
    defaults = cell.explainer.plugin.defaults
    for name in WORK_PARAMS:
        ref_value = ref.get("explainer_params", {}).get(ex, {}).get(name, defaults.get(name))
        value = cell.explainer.params.get(name, defaults.get(name))
        if isinstance(value, (int, float)) and isinstance(ref_value, (int, float)) and ref_value > 0:
            factor *= value / ref_value
    return factor


def _explained_clips(cell: EvaluateCell, n: dict[str, int]) -> int:
    pool = n["test_anomalous"] if dict(cell.evaluate)["clips"] == "anomalous" else n["test"]
    return min(pool, int(dict(cell.evaluate)["max_clips"]))


def _evaluate_seconds(cell: EvaluateCell, n: dict[str, int], ref: dict[str, Any], unpriced: set[str]) -> float:
    """Explaining and scoring the cell's clips, then each metric on its own clips; a reference without metric
    rates prices the whole cell by the explained clips (its evaluate rate then includes the metrics)."""
    pair_rate = _rate(ref["evaluate"], cell.train.detector.name, cell.explainer.name, unpriced)
    work, clips = _work_factor(cell, ref), _explained_clips(cell, n)
    seconds = pair_rate * work * clips * n["frames"]
    if "metrics" not in ref:
        return seconds
    for metric in cell.metrics:
        rate = _metric_rate(ref["metrics"], cell.train.detector.name, cell.explainer.name, metric.name, unpriced)
        scored = clips if metric.max_clips is None else min(clips, metric.max_clips)
        factor = _metric_work_factor(metric, ref) * (work if metric.name in REEXPLAINING else 1.0)
        seconds += rate * factor * scored * n["frames"]
    return seconds


def _metric_rate(rates: dict[str, dict[str, float]], det: str, ex: str, metric: str, unpriced: set[str]) -> float:
    """Seconds per scored clip and frame of `metric` in the (det, ex) cells: measured; else the median over the
    explainer's measured pairs (over every pair when the explainer is not in the reference); 0 when the
    reference computed the metric elsewhere but never for those pairs (it does not apply: a synthesis metric on
    a gradient map); the median of every metric rate when the reference never computed it."""
    if not any(metric in by_metric for by_metric in rates.values()):
        unpriced.add(metric)
        return statistics.median(r for by_metric in rates.values() for r in by_metric.values())
    pair = rates.get(f"{det}/{ex}")
    if pair is not None:
        return pair.get(metric, 0.0)
    same = [by_metric for k, by_metric in rates.items() if k.endswith(f"/{ex}")] or list(rates.values())
    return statistics.median(by_metric.get(metric, 0.0) for by_metric in same)


def _metric_work_factor(metric, ref: dict[str, Any]) -> float:
    """How much more work the metric's parameters (steps, samples) ask than the reference run's."""
    defaults = metric.plugin.defaults
    factor = 1.0
    for name in METRIC_WORK_PARAMS:
        ref_value = ref.get("metric_params", {}).get(metric.name, {}).get(name, defaults.get(name))
        value = metric.params.get(name, defaults.get(name))
        if isinstance(value, (int, float)) and isinstance(ref_value, (int, float)) and ref_value > 0:
            factor *= value / ref_value
    return factor


def _fit_clip_epochs(cell: EvaluateCell, n: dict[str, int]) -> float:
    """A trained interpreter's training clips times its budget's epoch cap (the clip budget `train_clips` of the
    normal training clips, less the validation share)."""
    epochs = cell.explainer.budget.epochs if cell.explainer.budget is not None else 100
    budget = cell.explainer.params.get("train_clips", cell.explainer.plugin.defaults.get("train_clips"))
    clips = n["train"] if not isinstance(budget, int) else min(budget, n["train"])
    return epochs * clips * (1 - VALIDATION_SHARE)


def _fit_seconds(cell: EvaluateCell, n: dict[str, int], ref: dict[str, Any], unpriced: set[str]) -> float:
    rate = _rate(ref.get("fit", {}) or {"-/-": 0.0}, cell.train.detector.name, cell.explainer.name, unpriced)
    return rate * _fit_clip_epochs(cell, n) * n["frames"]


def _detector_flops(flops: dict[str, dict[str, float]], detector: str, unpriced: set[str]) -> dict[str, float]:
    """The detector's FLOPs per bin of each pass kind; an unmeasured detector takes the median of each kind."""
    if detector in flops:
        return flops[detector]
    unpriced.add(detector)
    return {kind: statistics.median(f[kind] for f in flops.values()) for kind in next(iter(flops.values()))}


def _train_flops(cell: TrainCell, n: dict[str, int], flops: dict[str, Any], unpriced: set[str]) -> float:
    from .holdout import held_out_split
    from .training import training_passes
    per_pass = _detector_flops(flops, cell.detector.name, unpriced)
    fit, val = held_out_split(int(n["train"]), 0)
    epochs = cell.detector.budget.epochs if cell.detector.budget is not None else 1
    passes = training_passes(epochs, len(fit), len(val), int(n["test"]))
    return n["bins"] * (passes["passes_forward"] * per_pass["forward"]
                        + passes["passes_backward"] * per_pass["backward_train"])


def _evaluate_flops(cell: EvaluateCell, n: dict[str, int], ref: dict[str, Any], unpriced: set[str]) -> float:
    """Detector FLOPs of explaining and scoring the cell's clips: the reference run's passes per clip of the
    (detector, explainer) pair (else the explainer's median over detectors, else every pair's), scaled by the
    explainer's work parameters; with per-metric passes in the reference, each metric's passes per clip it
    scored on its own clip budget and work factor, as `_evaluate_seconds` prices its seconds."""
    det, ex = cell.train.detector.name, cell.explainer.name
    per_pass = _detector_flops(ref["flops"], det, unpriced)
    passes = ref.get("passes", {})
    forward = _rate({k: v["forward"] for k, v in passes.items()} or {"-/-": 1.0}, det, ex, unpriced)
    backward = _rate({k: v["backward"] for k, v in passes.items()} or {"-/-": 0.0}, det, ex, unpriced)
    work, clips = _work_factor(cell, ref), _explained_clips(cell, n)
    flops = work * clips * n["bins"] * (forward * per_pass["forward"] + backward * per_pass["backward_input"])
    if "metric_passes" not in ref:
        return flops
    by_kind = {kind: {p: {m: v[kind] for m, v in ms.items()} for p, ms in ref["metric_passes"].items()}
               for kind in ("forward", "backward")}
    for metric in cell.metrics:
        scored = clips if metric.max_clips is None else min(clips, metric.max_clips)
        factor = _metric_work_factor(metric, ref) * (work if metric.name in REEXPLAINING else 1.0)
        f = _metric_rate(by_kind["forward"], det, ex, metric.name, unpriced)
        b = _metric_rate(by_kind["backward"], det, ex, metric.name, unpriced)
        flops += factor * scored * n["bins"] * (f * per_pass["forward"] + b * per_pass["backward_input"])
    return flops


def build_reference(cost_csv: Path, suite: Suite, store_dir: Path | None = None,
                    cells_at_once: int = 2) -> dict[str, Any]:
    """Rates from a measured run of `suite`: its cost.csv (detector epochs as run, interpreter fits) and, given
    its store, each metric's seconds and scored clips (the evaluate rates are then what is left of each cell's
    time). Wall seconds are divided by `cells_at_once`, the cells that shared the machine."""
    import pandas as pd
    cost = pd.read_csv(cost_csv)
    frames = {ds.label: dataset_counts(ds)["frames"] for ds in suite.datasets}
    train = cost[cost.cell == "train"]
    units = train.epochs * train.n_train * train.dataset.map(frames)
    rates_train = (train.wall_s.groupby(train.detector).sum() / cells_at_once
                   / units.groupby(train.detector).sum()).to_dict()
    ev = cost[cost.cell == "evaluate"]
    fit_s = ev.fit_s.fillna(0.0)
    fitted = ev[fit_s > 0]
    rates_fit = {}
    if not fitted.empty:  # a run without trained interpreters has no fit rates
        units = fitted.fit_clip_epochs * fitted.dataset.map(frames).astype(float)
        fit_pair = fitted.detector + "/" + fitted.explainer
        rates_fit = (fitted.fit_s.groupby(fit_pair).sum() / cells_at_once / units.groupby(fit_pair).sum()).to_dict()
    out = {"source": f"{cost_csv}" + (f" and the store {store_dir}" if store_dir else ""),
           "machine": f"2 CPU cores (AVX2), the project's reference machine, {cells_at_once} cell(s) at a time",
           "train": {k: float(v) for k, v in sorted(rates_train.items())},
           "explainer_params": {e.name: {**{k: v for k, v in e.plugin.defaults.items() if k in WORK_PARAMS},
                                         **{k: v for k, v in e.params.items() if k in WORK_PARAMS}}
                                for e in suite.explainers},
           "fit": {k: float(v) for k, v in sorted(rates_fit.items())}}
    if store_dir is None:
        pair = ev.detector + "/" + ev.explainer
        units = ev.n_clips * ev.dataset.map(frames)
        rates_eval = ((ev.wall_s - fit_s).groupby(pair).sum() / cells_at_once / units.groupby(pair).sum())
        out["evaluate"] = {k: float(v) for k, v in sorted(rates_eval.to_dict().items())}
        out["passes"] = pass_reference(cost_csv)
        return out
    out.update(_metric_rates(Path(store_dir), suite, frames, cells_at_once))
    out["metric_params"] = {m.name: {k: v for k, v in {**m.plugin.defaults, **m.params}.items()
                                     if k in METRIC_WORK_PARAMS} for m in suite.metrics}
    return out


def _metric_rates(store_dir: Path, suite: Suite, frames: dict[str, int], cells_at_once: int) -> dict[str, Any]:
    """From the store of a run of `suite`, per (detector, explainer): each metric's seconds per scored clip and
    frame and its detector passes per scored clip; the rest of each evaluate cell (explaining, scoring) in
    seconds per explained clip and frame, and its passes per explained clip. Cells that reused stored metrics
    are left out of the rest's seconds (their wall time lacks those metrics), cells that reused a stored
    explanation out of the rest's passes (a cold run explains)."""
    import pandas as pd
    _, evals = expand(suite)
    # pair -> metric -> [seconds, forward, backward, scored clips, scored clips x frames]
    metric: dict[str, dict[str, list[float]]] = {}
    rest: dict[str, list[float]] = {}  # pair -> [seconds, explained clips, forward, backward, clips of passes]
    for cell in evals:
        path = store_dir / "cells" / cell.key / "cell.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        if record.get("status") != "done":
            continue  # skipped (the explainer does not apply) or failed
        pair, n_frames, c = f"{record['detector']}/{record['explainer']}", frames[cell.train.dataset.label], \
            record["cost"]
        spent = 0.0
        for name, key in zip((m.name for m in cell.metrics), cell.metric_keys, strict=True):
            metric_dir = store_dir / "cells" / key
            if not (metric_dir / "rows.parquet").is_file():
                continue  # skipped (does not apply) or failed
            cost = json.loads((metric_dir / "cell.json").read_text())["cost"]
            scored = pd.read_parquet(metric_dir / "rows.parquet", columns=["clip_id"]).clip_id.nunique()
            sums = metric.setdefault(pair, {}).setdefault(name, [0.0, 0.0, 0.0, 0.0, 0.0])
            # a metric's passes are recorded per clip of its cell
            for i, value in enumerate((cost["seconds"], cost["forward"] * c["n_clips"],
                                       cost["backward"] * c["n_clips"], scored, scored * n_frames)):
                sums[i] += value
            spent += cost["seconds"]
        sums = rest.setdefault(pair, [0.0, 0.0, 0.0, 0.0, 0.0])
        if c.get("metrics_reused", 0) == 0:
            sums[0] += max(c["wall_s"] - c.get("fit_s", 0.0) - spent, 0.0)
            sums[1] += c["n_clips"] * n_frames
        if c.get("explanation") != "stored":
            sums[2] += (c.get("explainer_forward", 0.0) + c.get("score_forward", 0.0)) * c["n_clips"]
            sums[3] += c.get("explainer_backward", 0.0) * c["n_clips"]
            sums[4] += c["n_clips"]
    return {"evaluate": {p: r[0] / cells_at_once / r[1] for p, r in sorted(rest.items()) if r[1]},
            "passes": {p: {"forward": r[2] / r[4], "backward": r[3] / r[4]} for p, r in sorted(rest.items())
                       if r[4]},
            "metrics": {p: {m: v[0] / cells_at_once / v[4] for m, v in sorted(ms.items()) if v[4]}
                        for p, ms in sorted(metric.items())},
            "metric_passes": {p: {m: {"forward": v[1] / v[3], "backward": v[2] / v[3]} for m, v in sorted(ms.items())
                                  if v[3]} for p, ms in sorted(metric.items())}}


def pass_reference(cost_csv: Path) -> dict[str, dict[str, float]]:
    """Detector passes per explained clip of each (detector, explainer) pair in a measured cost.csv: the
    explainer's, the metrics' and the shared scoring pass, averaged over the pair's cells by their clips. Cells
    that reused a stored explanation (0 explainer passes) are left out, so the figures are a cold run's."""
    import pandas as pd
    ev = pd.read_csv(cost_csv)
    ev = ev[(ev.cell == "evaluate") & (ev.get("explanation", "computed") != "stored")].copy()
    cols = lambda *names: sum(ev[c].fillna(0.0) if c in ev else 0.0 for c in names)  # noqa: E731
    ev["forward"] = cols("explainer_forward", "metric_forward", "score_forward") * ev.n_clips
    ev["backward"] = cols("explainer_backward", "metric_backward") * ev.n_clips
    sums = ev.groupby(ev.detector + "/" + ev.explainer)[["forward", "backward", "n_clips"]].sum()
    return {k: {"forward": float(r.forward / r.n_clips), "backward": float(r.backward / r.n_clips)}
            for k, r in sums.iterrows() if r.n_clips > 0}


def flop_reference(store_dir: Path, suite: Suite) -> dict[str, dict[str, float]]:
    """Each detector's FLOPs per bin (`benchmark.flops.pass_flops`) on one test clip, averaged over the
    datasets the run trained it on (seed 0's checkpoints, else the first seed's)."""
    import torch

    from .flops import pass_flops
    from .store import Store
    from .workspace import Workspace
    ws = Workspace(Store(store_dir), torch.device("cpu"))
    trains, _ = expand(suite)
    first_seed = min(c.seed for c in trains)
    found: dict[str, list[dict[str, float]]] = {}
    for cell in trains:
        if cell.seed == first_seed and ws.store.checkpoint_path(cell.key).is_file():  # ws.detector reads it
            det = ws.detector(cell.key, cell.detector)
            found.setdefault(cell.detector.name, []).append(pass_flops(det, ws.table(cell.dataset, "test").x[:1]))
    return {name: {kind: float(statistics.fmean(f[kind] for f in runs)) for kind in runs[0]}
            for name, runs in sorted(found.items())}


def _rounded(value: Any) -> Any:
    """Rates to 5 significant digits: measured on a shared machine, the rest is noise (and file size)."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, float):
        return float(f"{value:.5g}")
    return value


if __name__ == "__main__":
    import sys

    from .suites import load_suite
    suite = load_suite(sys.argv[2])
    runs = Path(sys.argv[3])
    data = build_reference(Path(sys.argv[1]), suite, runs, int(sys.argv[4]) if len(sys.argv) > 4 else 2)
    data["passes_source"] = f"{runs}: the explainer's and scoring passes per explained clip, each metric's per clip"
    data["flops"] = flop_reference(runs, suite)
    data["flops_source"] = f"benchmark.flops.pass_flops on the trained detectors of {runs}"
    REFERENCE_FILE.write_text(json.dumps(_rounded(data), indent=1) + "\n")
    print(REFERENCE_FILE)
