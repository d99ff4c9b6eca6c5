"""audio-xai-bench: explanation methods x anomalous-sound detectors x datasets, under shared metrics.

Python API for notebooks and tests::

    import benchmark
    benchmark.list_plugins("explainer")
    det = benchmark.make("detector", "ae")
    ds = benchmark.load_dataset("synthetic-machines", size="smoke", seed=0)
    tables = benchmark.run("starter")                 # runs (cached) and publishes; {"leaderboard": df, ...}
    rows = benchmark.load_results("results/runs")     # every per-clip value, long format
    res = benchmark.explain("clip.wav", detector="ae", explainer="integrated_gradients",
                            suite_run="results/runs")  # res.attribution [F, T], res.score, res.verdict

Metric functions live in `benchmark.metrics`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import BenchmarkError

__version__ = "0.1.0"


def list_plugins(kind: str) -> list[dict[str, Any]]:
    """Every registered plugin of a kind ("dataset(s)", "detector(s)", ...) with its metadata."""
    from .registry import registry
    return [p.describe() for p in registry(kind).plugins()]


def make(kind: str, name: str, **params: Any) -> Any:
    """Instantiate a registered plugin; unknown names fail with a did-you-mean message."""
    from .registry import registry
    return registry(kind).make(name, **params)


def load_dataset(name: str, **params: Any):
    """A registered dataset object (clips stream lazily from `.clips(split)`)."""
    return make("dataset", name, **params)


def run(suite: str, *, out: str | Path | None = None, leaderboards: str | Path | None = None, device: str = "auto",
        datasets: list[str] | None = None, detectors: list[str] | None = None, explainers: list[str] | None = None,
        seeds: list[int] | None = None, add_detectors: list[str] | None = None,
        add_explainers: list[str] | None = None, add_metrics: list[str] | None = None,
        data_root: str | None = None, progress: str = "auto", yes: bool = False,
        precision: str | None = None) -> dict[str, Any]:
    """Run a suite exactly as `run --suite` does (cached, resumable, published) and return its published tables:
    {"leaderboard": DataFrame, "detectors": ..., "<family>": ..., "results": per-clip long table, "folder": Path,
    "failed": [cell labels]}. Bad input raises `BenchmarkError`; failed cells are listed, not raised."""
    from .cli import DEFAULT_LEADERBOARDS, DEFAULT_OUT, build_parser, cmd_run, suite_name_of
    args = build_parser().parse_args(["run", "--suite", str(suite)])
    vars(args).update(out=Path(out or DEFAULT_OUT), leaderboards=Path(leaderboards or DEFAULT_LEADERBOARDS),
                      device=device, datasets=datasets, detectors=detectors, explainers=explainers, seeds=seeds,
                      add_detectors=add_detectors, add_explainers=add_explainers, add_metrics=add_metrics,
                      data_root=data_root, progress=progress, yes=yes, precision=precision)
    cmd_run(args)
    folder = Path(args.leaderboards) / suite_name_of(str(suite))
    tables: dict[str, Any] = load_tables(folder)
    tables["folder"] = folder
    board = tables.get("leaderboard")
    tables["failed"] = [] if board is None or "status" not in board else sorted(
        f"{r.dataset} / {r.detector} / {r.explainer}" for r in board.itertuples() if r.status == "failed")
    return tables


def load_tables(folder: str | Path) -> dict[str, Any]:
    """The tables of a published leaderboard folder: every CSV by its stem, and `results` (results.parquet)."""
    import pandas as pd
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"no published leaderboard folder at '{folder}'")
    tables: dict[str, Any] = {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}
    if (folder / "results.parquet").is_file():
        tables["results"] = pd.read_parquet(folder / "results.parquet")
    return tables


def load_results(out: str | Path, suite: str | None = None):
    """Per-clip values in long format (one row per dataset, detector, seed, explainer, metric, parameter and
    clip; `metric == "anomaly_score"` rows hold the detector's scores): from a results store (`--out`; every
    finished cell, or only those of `suite`'s last run) or from a published folder (its results.parquet)."""
    import pandas as pd

    from .store import DONE, Store
    out = Path(out)
    if (out / "results.parquet").is_file():
        return pd.read_parquet(out / "results.parquet")
    if not (out / "cells").is_dir():
        raise BenchmarkError(f"'{out}' is neither a results store (the --out of a run) nor a published folder")
    store = Store(out)
    if suite is not None:
        from .cli import suite_name_of
        names = [suite_name_of(suite)]
    else:  # the last run of every suite in the store (a cell's parts hold the same rows again: not those)
        names = sorted(p.stem for p in (out / "suites").glob("*.json"))
    keys: list[str] = []
    for name in names:
        manifest = store.suite_manifest(name)
        if manifest is None:
            raise BenchmarkError(f"no run of suite {name!r} in '{out}'")
        keys += [k for k in manifest["train"] + manifest["evaluate"] if k not in keys]
    return store.rows([k for k in keys if (store.status(k) or {}).get("status") == DONE])


def explain(wav: str | Path, *, detector: str, explainer: str, checkpoint: str | Path | None = None,
            suite_run: str | Path | None = None, dataset: str | None = None, out: str | Path | None = None,
            device: str = "cpu"):
    """Explain one recording with a trained detector (a checkpoint, or the detector of a run's store): returns
    an `ExplainResult` (attribution `[F, T]`, score, threshold, p_anomalous, verdict, how the clip was fitted,
    ground truth found, files written under `out` when given)."""
    from .explain_one import explain as explain_recording
    return explain_recording(wav, detector=detector, explainer=explainer, checkpoint=checkpoint,
                             suite_run=suite_run, dataset=dataset, out=out, device=device)


__all__ = ["list_plugins", "make", "load_dataset", "run", "explain", "load_results", "load_tables", "__version__"]
