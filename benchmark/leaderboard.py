"""Leaderboards derived from the long-format store: `leaderboard.csv`, `detectors.csv`, `cost.csv`.

`leaderboard.csv` has one row per dataset x detector x explainer and, for every metric[param],
the columns `.mean`, `.ci_low`, `.ci_high` (95 % bootstrap over clips, a clip's seeds resampled
together), `.seed_std` (std of the per-seed means), `.n` (clip results), `.chance` (where defined)
and `.rank` (within dataset x detector, 1 = best in the metric's direction). Percentile metrics also
get `[max]` (max over p of the mean) and `[mean98_99]`. Neither it nor `detectors.csv` holds wall-clock
values, so the same store gives byte-identical files.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import BenchmarkError
from .integrity import check_name, inside, remove_stale_staging, staging_folder, swap_in
from .metrics import detection as detection_module
from .metrics.detection import detection_table
from .progress import Counter
from .provenance import RESULTS_FILE
from .publish_cache import cached_frame
from .references import is_reference, without_references
from .report import write_report
from .statistics import CONTROL, degenerate_columns, metric_meta, recorded_specs
from .store import Store, atomic_write_bytes

KEYS = ["dataset", "detector", "explainer"]
BOOTSTRAP_RESAMPLES = 1000
FLOAT_FORMAT = "%.6g"
SCORE_METRIC = "anomaly_score"
STATS = ("mean", "ci_low", "ci_high", "seed_std", "n", "chance", "rank")


def column_name(metric: str, param: str) -> str:
    return f"{metric}[{param}]" if param else metric


def bootstrap_ci(values: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 level: float = 0.95, clusters: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` `[n]`, resampling clips with replacement.

    `clusters` `[n]` (the clip of each value): the rows of one clip under several detector seeds are not
    independent, so whole clips are resampled, their seeds nested inside; without it (or with one row per
    clip, in clip order) every row is its own clip."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if clusters is None or len(np.unique(clusters)) == n:
        means = values[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    else:
        _, which = np.unique(clusters, return_inverse=True)
        sums, counts = np.bincount(which, weights=values), np.bincount(which).astype(float)
        draw = rng.integers(0, len(sums), size=(resamples, len(sums)))
        means = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _clip_means(matrix: np.ndarray, clips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`[R, P]` bootstrap means of the columns of `matrix` `[n, P]`, resampling whole clips (a clip's rows under
    several seeds stay together); with one row per clip, in clip order, the plain row bootstrap."""
    n = len(matrix)
    _, which = np.unique(clips, return_inverse=True)
    if which.max() + 1 == n:
        return matrix[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
    sums = np.stack([np.bincount(which, weights=matrix[:, j]) for j in range(matrix.shape[1])], axis=1)
    counts = np.bincount(which).astype(float)
    draw = rng.integers(0, len(counts), size=(BOOTSTRAP_RESAMPLES, len(counts)))
    return sums[draw].sum(axis=1) / counts[draw].sum(axis=1)[:, None]


def _summary(values: np.ndarray, seeds: np.ndarray, chance: np.ndarray,
             clips: np.ndarray | None = None) -> dict[str, float]:
    lo, hi = bootstrap_ci(values, clusters=clips)
    per_seed = pd.Series(values).groupby(seeds).mean()
    return {"mean": float(values.mean()), "ci_low": lo, "ci_high": hi,
            "seed_std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"),
            "n": float(len(values)), "chance": float(np.nanmean(chance)) if np.isfinite(chance).any() else float("nan")}


def _percentile_summaries(group: pd.DataFrame) -> dict[str, dict[str, float]]:
    """`[max]` (max over p of the mean, bootstrapped jointly over clips) and `[mean98_99]`."""
    wide = group.pivot_table(index=["clip_id", "detector_seed"], columns="param", values="value", aggfunc="first")
    chance = group.pivot_table(index=["clip_id", "detector_seed"], columns="param", values="chance",
                               aggfunc="first", dropna=False).reindex(index=wide.index, columns=wide.columns)
    out: dict[str, dict[str, float]] = {}
    if wide.shape[1] < 2 or wide.isna().any().any():
        return out
    # the derived parameters' chance levels, from the per-percentile ones where every p has one: [max] takes
    # the max over p of the chance means (a lower bound: `_max_chance_of_random` replaces it by the random
    # map's own [max] where the suite ran that control), [mean98_99] their mean
    levels = chance.to_numpy(dtype=float)
    defined = np.isfinite(levels).all()
    max_chance = float(levels.mean(axis=0).max()) if defined else float("nan")
    matrix = wide.to_numpy()
    seeds = wide.index.get_level_values("detector_seed").to_numpy()
    clips = wide.index.get_level_values("clip_id").to_numpy()
    n = len(matrix)
    boot = _clip_means(matrix, clips, np.random.default_rng(0)).max(axis=1)
    per_seed = pd.DataFrame(matrix).groupby(seeds).mean().max(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    out["max"] = {"mean": float(matrix.mean(axis=0).max()), "ci_low": float(lo), "ci_high": float(hi),
                  "seed_std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"),
                  "n": float(n), "chance": max_chance}
    if {"98", "99"} <= set(wide.columns):
        pair = wide[["98", "99"]].to_numpy().mean(axis=1)
        pair_chance = chance[["98", "99"]].to_numpy(dtype=float).mean(axis=1)
        out["mean98_99"] = _summary(pair, seeds, pair_chance, clips)
    return out


def _is_percentile_param(params: pd.Series) -> bool:
    return params.str.fullmatch(r"\d+").all() and params.nunique() > 1


def leaderboard_table(rows: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """Wide leaderboard from per-clip rows and the cell records (status of every evaluate cell)."""
    rows = rows[rows["metric"] != SCORE_METRIC]
    stats: dict[tuple, dict[str, float]] = {}
    for (ds, det, ex, metric), group in rows.groupby(KEYS + ["metric"], sort=True):
        group = group.sort_values(["param", "clip_id", "detector_seed"])
        for param, g in group.groupby("param", sort=True):
            summary = _summary(g["value"].to_numpy(), g["detector_seed"].to_numpy(), g["chance"].to_numpy(),
                               g["clip_id"].to_numpy())
            for k, v in summary.items():
                stats.setdefault((ds, det, ex), {})[f"{column_name(metric, param)}.{k}"] = v
        if _is_percentile_param(group["param"]):
            for param, summary in _percentile_summaries(group).items():
                for k, v in summary.items():
                    stats[(ds, det, ex)][f"{column_name(metric, param)}.{k}"] = v
    status = _cell_status(records)
    index = sorted(set(stats) | set(status))
    table = pd.DataFrame([{**dict(zip(KEYS, key, strict=True)), "status": status.get(key, "done"), **stats.get(key, {})}
                          for key in index], columns=None)
    if table.empty:
        return pd.DataFrame(columns=KEYS + ["status"])
    table = _max_chance_of_random(table)
    ranks = {}
    for col in sorted(c for c in table.columns if c.endswith(".mean") and not is_reference(c)):
        metric = col.split("[")[0].removesuffix(".mean")
        # a metric kept for parity but not ranked (ff_segment) gets an empty rank column, like a degenerate one
        ranks[col.removesuffix(".mean") + ".rank"] = table.groupby(["dataset", "detector"])[col].rank(
            method="min", ascending=not _higher_is_better(metric)) if metric_meta(metric).ranked else np.nan
    ranks = pd.DataFrame(ranks, index=table.index)
    # a column that cannot tell the explainers apart ranks none of them (nor counts in Borda or agreement)
    for d in without_references(degenerate_columns(table)).itertuples():
        ranks.loc[(table["dataset"] == d.dataset) & (table["detector"] == d.detector), f"{d.metric}.rank"] = np.nan
    table = pd.concat([table, ranks], axis=1)
    value_cols = sorted((c for c in table.columns if c not in KEYS + ["status"]), key=_column_order)
    return table[KEYS + ["status"] + value_cols].sort_values(KEYS).reset_index(drop=True)


def _max_chance_of_random(table: pd.DataFrame) -> pd.DataFrame:
    """`[max]`'s chance level = the random map's own `[max]` in the same dataset × detector, where the suite ran
    the `random` control: a max over ten correlated percentile means is biased upwards for any map, and the
    random map's is that bias at chance (one Monte-Carlo draw of a map per clip, at the board's n). Without the
    control it stays the max over p of the per-percentile chance means, a lower bound."""
    random = table[table["explainer"] == CONTROL].set_index(["dataset", "detector"])
    if random.empty:
        return table
    out = table.copy()
    groups = pd.MultiIndex.from_frame(out[["dataset", "detector"]])
    for col in [c for c in out.columns if c.endswith("[max].chance")]:
        own = random[col.replace(".chance", ".mean")].reindex(groups).to_numpy(dtype=float)
        out[col] = np.where(np.isfinite(own), own, out[col].to_numpy(dtype=float))
    return out


def _column_order(column: str) -> tuple[str, int]:
    name, _, stat = column.rpartition(".")
    return name, STATS.index(stat)


def _higher_is_better(metric: str) -> bool:
    return metric_meta(metric).higher_is_better


def _cell_status(records: list[dict]) -> dict[tuple, str]:
    out = {}
    for r in records:
        if r.get("cell") == "train" or "explainer" not in r:
            continue
        key = (r["dataset"], r["detector"], r["explainer"])
        if r["status"] == "done":
            out.setdefault(key, "done")
        else:
            out[key] = f"{r['status']}: {r.get('reason', '')}"
    return out


def cost_table(records: list[dict]) -> pd.DataFrame:
    """Wall seconds, passes per clip and peak memory per cell (not reproducible: kept out of the leaderboard)."""
    rows = []
    for r in records:
        if "cost" not in r:
            continue
        rows.append({"cell": r.get("cell"), "dataset": r.get("dataset"), "detector": r.get("detector"),
                     "explainer": r.get("explainer", "-"), "seed": r.get("seed"), **r["cost"]})
    return pd.DataFrame(rows)


def _csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return buf.getvalue().encode()


def with_training(detectors: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """Detection rows with how each detector was trained, over its seeds: `epochs` (mean epochs run) and
    `capped` (some seed's training stopped at the budget's `max_seconds` safety cap, not at its epochs or
    early stopping: its numbers depend on the machine). Seconds stay in cost.csv: this table is
    reproducible byte for byte."""
    trained: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r.get("cell") == "train" and r.get("status") == "done":
            trained.setdefault((r["dataset"], r["detector"]), []).append(r.get("log") or {})
    out = detectors.copy()
    keys = list(zip(out["dataset"], out["detector"], strict=True)) if len(out) else []

    def over_seeds(key, field, how):
        values = [log[field] for log in trained.get(key, []) if field in log]
        return how(values) if values else np.nan

    out["epochs"] = [over_seeds(k, "epochs", np.mean) for k in keys]
    out["capped"] = [bool(over_seeds(k, "capped_by_time", any) is True) for k in keys]
    return out


PUBLISH_STAGES = ("tables", "statistics", "figures and audio", "page and manifest")


def results_bytes(rows: pd.DataFrame) -> bytes:
    """Every per-clip value of the run in long format (ROW_COLUMNS, the anomaly scores included), sorted so
    that the same store publishes the same bytes."""
    order = ["dataset", "detector", "detector_seed", "explainer", "metric", "param", "clip_id"]
    table = rows.sort_values(order, kind="stable").reset_index(drop=True)
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


def publish(store: Store, suite_name: str, leaderboards: Path, progress: str | None = None) -> Path:
    """Rebuild `leaderboards/<suite>/` from the store's record of the suite's last run: written whole into a
    staging folder and renamed into place, so readers see the old folder or the new one, never a mix. A cell
    whose files no longer verify stops the publish (`BenchmarkError`, "re-run"). `progress`: a mode of
    `benchmark.progress` (default: bars on a terminal, lines otherwise)."""
    check_name(suite_name, "suite name")
    manifest = store.suite_manifest(suite_name)
    if manifest is None:
        raise BenchmarkError(f"no run of suite {suite_name!r} in '{store.root}': run "
                             f"`python -m benchmark run --suite {suite_name} --out {store.root}` first")
    keys = manifest["train"] + manifest["evaluate"]
    damaged = [(k, p) for k in keys if (p := store.problem(k)) is not None]
    if damaged:
        key, problem = damaged[0]
        label = (store.status(key) or {}).get("label", key)
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise BenchmarkError(f"cell {label} ({key[:10]}) is damaged: {problem}{more}; re-run "
                             f"`python -m benchmark run --suite {suite_name} --out {store.root}` to recompute it")
    rows = store.rows(keys)
    records = store.records(keys)
    target = inside(leaderboards, Path(leaderboards) / suite_name)
    remove_stale_staging(target.parent)
    try:
        staging = staging_folder(target)
    except OSError as exc:
        raise BenchmarkError(f"cannot write leaderboards into '{leaderboards}': {exc.strerror or exc}") from None
    stages = Counter(f"publish {suite_name}", len(PUBLISH_STAGES), progress)
    try:
        with recorded_specs(manifest.get("metric_specs")):  # the run's facts, not today's plugins
            _write_tables(staging, store, suite_name, manifest, rows, records, stages)
        swap_in(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BenchmarkError(f"cannot write leaderboards into '{leaderboards}' ({exc.strerror or exc}); nothing "
                             f"was changed there: free space or pass another --leaderboards") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        stages.close()
    return target


def _write_tables(folder: Path, store: Store, suite_name: str, manifest: dict, rows: pd.DataFrame,
                  records: list[dict], stages: Counter | None = None) -> None:
    if stages is not None:
        stages.stage(PUBLISH_STAGES[0])
    scores = rows[rows["metric"] == SCORE_METRIC]
    leaderboard = leaderboard_table(rows, records)
    detection = cached_frame(store.root, "detection_table", scores.reset_index(drop=True),
                             lambda: detection_table(scores), code=(Path(detection_module.__file__),))
    detectors = with_training(detection, records)
    atomic_write_bytes(folder / "leaderboard.csv", _csv_bytes(leaderboard))
    atomic_write_bytes(folder / "detectors.csv", _csv_bytes(detectors))
    atomic_write_bytes(folder / "cost.csv", _csv_bytes(cost_table(records)))
    atomic_write_bytes(folder / RESULTS_FILE, results_bytes(rows))
    write_report(folder, suite_name=suite_name, leaderboard=leaderboard, detectors=detectors, rows=rows,
                 records=records, store=store, manifest=manifest, stages=stages)
