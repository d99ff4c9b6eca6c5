"""Statistics behind the published rankings: paired tests between ranked neighbours, Borda and mean
ranks per metric family, and the agreement (Kendall τ) between the rankings different metrics give.

Everything here is a pure function of the wide leaderboard (`benchmark.leaderboard.leaderboard_table`)
and the long per-clip rows (`benchmark.store.ROW_COLUMNS`).

* A *ranking* is one leaderboard column `metric[param]` within one dataset × detector: its explainers
  ordered by the column's `.rank` (1 = best in the metric's direction; ties broken by name).
* *Neighbours* are consecutive explainers in a ranking. Each pair is compared with a two-sided Wilcoxon
  signed-rank test on the clips both explainers were scored on (pairs = (clip_id, detector_seed)).
  The p-values of the k − 1 neighbour pairs of a ranking are Holm-corrected together (family-wise
  error ≤ α within each ranking; rankings are not corrected against each other), and a pair is
  *distinguishable* when its Holm-adjusted p < α.
* *Against the control*: every explainer is also compared with the `random` control on the clips both
  were scored on, one-sided in the metric's direction (Holm over the explainers of a ranking): a map
  that does not beat a random one says nothing about the detector, whatever its rank.
* A *headline* column is the summary of a metric that the rankings use: the plugin's `spec.headline`
  when it names one, else for percentile metrics (`spec.params == "percentile"`) `[mean98_99]` (the
  planer paper's mean over p ∈ {98, 99}) or `[max]`, else every parameter of the metric.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, wilcoxon

from .errors import BenchmarkError
from .registry import registry

ALPHA = 0.05
EXACT_MAX_N = 50
CORRECTION = "holm"
GROUP = ["dataset", "detector"]
CONTROL = "random"
CONTROLS = ("random", "energy")  # every localisation/temporal score is read against both
OTHER_FAMILY = "other"
DERIVED_PARAMS = ("mean98_99", "max")
_COLUMN = re.compile(r"^(?P<metric>[^\[\]]+?)(?:\[(?P<param>[^\]]*)\])?$")


@dataclass(frozen=True)
class MetricMeta:
    """What the report needs to know about a metric: its family, direction and headline parameter."""

    family: str
    higher_is_better: bool
    per_percentile: bool = False
    headline: tuple[str, ...] = ()
    ranked: bool = True  # False: published for parity, kept out of the headline set (ranks, Borda, tests)


_RECORDED: ContextVar[dict[str, MetricMeta] | None] = ContextVar("recorded_metric_specs", default=None)


def metric_specs(names: list[str]) -> dict[str, dict[str, Any]]:
    """What a run records of its metrics (family, direction, headline, ...), so a publish reads the facts of the
    run rather than the plugins installed when it publishes."""
    return {name: asdict(metric_meta(name)) for name in names}


@contextmanager
def recorded_specs(specs: dict[str, dict[str, Any]] | None) -> Iterator[None]:
    """Inside: `metric_meta` answers from `specs` (a run's `metric_specs`) for the metrics they name; a store
    recorded before specs were (None) reads the registry as before."""
    known = {name: MetricMeta(**{**spec, "headline": tuple(spec.get("headline", ()))})
             for name, spec in (specs or {}).items()}
    token = _RECORDED.set(known or None)
    try:
        yield
    finally:
        _RECORDED.reset(token)


def metric_meta(metric: str) -> MetricMeta:
    """Metadata of a metric: as the run recorded it (inside `recorded_specs`), else from the registry; a metric
    no longer registered falls in the family 'other'."""
    recorded = _RECORDED.get()
    if recorded is not None and metric in recorded:
        return recorded[metric]
    try:
        spec = registry("metric").get(metric).spec
    except BenchmarkError:
        return MetricMeta(OTHER_FAMILY, True)
    return MetricMeta(spec.family, spec.higher_is_better, spec.params == "percentile", spec.headline, spec.ranked)


def split_column(column: str) -> tuple[str, str]:
    """'ff[95]' -> ('ff', '95'); 'sps' -> ('sps', '')."""
    match = _COLUMN.match(column)
    if match is None:
        raise ValueError(f"not a leaderboard metric column: {column!r}")
    return match["metric"], match["param"] or ""


def metric_columns(leaderboard: pd.DataFrame) -> list[str]:
    """Every `metric[param]` of the leaderboard (the names before `.mean`), sorted."""
    return sorted(c.removesuffix(".mean") for c in leaderboard.columns if c.endswith(".mean"))


def headline_columns(leaderboard: pd.DataFrame, meta: dict[str, MetricMeta] | None = None) -> list[str]:
    """One summary column per ranked metric (several for metrics with non-percentile parameters), sorted."""
    return [c for info, c in _summary_columns(leaderboard, meta) if info.ranked]


def unranked_columns(leaderboard: pd.DataFrame, meta: dict[str, MetricMeta] | None = None) -> list[str]:
    """The summary columns of metrics published but not ranked (kept for a paper's parity, like ff_segment),
    which are read against the controls' levels instead."""
    return [c for info, c in _summary_columns(leaderboard, meta) if not info.ranked]


def _summary_columns(leaderboard: pd.DataFrame, meta: dict[str, MetricMeta] | None) -> list[tuple[MetricMeta, str]]:
    """(metric facts, summary column) of every metric of the board: its headline parameters, else the first
    derived percentile summary, else its own parameters; sorted by metric."""
    by_metric: dict[str, list[str]] = {}
    for col in metric_columns(leaderboard):
        metric, param = split_column(col)
        by_metric.setdefault(metric, []).append(param)
    out = []
    for metric, params in sorted(by_metric.items()):
        info = (meta or {}).get(metric) or metric_meta(metric)
        wanted = [p for p in info.headline if p in params]
        if not wanted and info.per_percentile:
            wanted = [p for p in DERIVED_PARAMS if p in params][:1]
        if not wanted:
            wanted = [p for p in params if p not in DERIVED_PARAMS] or params
        out.extend((info, f"{metric}[{p}]" if p else metric) for p in wanted)
    return out


def paired_wilcoxon(a: np.ndarray, b: np.ndarray, alternative: str = "two-sided") -> float:
    """Wilcoxon signed-rank p-value of paired samples `a, b: [n]` (`alternative` as scipy's: "greater"
    tests a > b).

    Zero differences are dropped (Wilcoxon's convention). Without ties among the |differences| and for at
    most EXACT_MAX_N pairs the exact null distribution is used, else the normal approximation with the tie
    correction (scipy's own fallback for ties is a permutation test, far too slow for a leaderboard).
    No pairs -> NaN; no non-zero difference -> 1."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) == 0:
        return float("nan")
    d = d[d != 0]
    if len(d) == 0:
        return 1.0
    exact = len(d) <= EXACT_MAX_N and np.unique(np.abs(d)).size == len(d)
    return float(wilcoxon(d, alternative=alternative, method="exact" if exact else "approx").pvalue)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values `[m]` (NaNs stay NaN and do not count in m)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(stepped, 1.0)
    return out


def per_clip_tables(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One dataset × detector × metric's rows as, per explainer, `[(clip_id, detector_seed), param]` values."""
    wide = rows.pivot_table(index=["clip_id", "detector_seed"], columns=["explainer", "param"], values="value",
                            aggfunc="first")
    explainers = wide.columns.get_level_values("explainer")
    # a boolean selection keeps the param level even when its only label is "" (wide[ex] would collapse it)
    return {ex: wide.loc[:, explainers == ex].droplevel("explainer", axis=1).dropna(how="all")
            for ex in explainers.unique()}


def clip_values(wide: pd.DataFrame, param: str) -> pd.Series | None:
    """Per-clip values behind one leaderboard column `metric[param]`, from one of `per_clip_tables`.

    `[mean98_99]` is the per-clip mean of p = 98 and 99; `[max]` takes each clip's value at the percentile
    where this explainer's mean peaks. None when the column cannot be traced back to per-clip values.
    """
    if param in wide.columns:
        return wide[param].dropna()
    if param == "mean98_99" and {"98", "99"} <= set(wide.columns):
        return wide[["98", "99"]].mean(axis=1, skipna=False).dropna()
    if param == "max" and wide.shape[1] > 1:
        return wide[wide.mean(axis=0).idxmax()].dropna()
    return None


class ClipValues:
    """Per-clip values behind leaderboard columns, one pivot per dataset × detector × metric (cached)."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.by_key = {key: g for key, g in rows.groupby(["dataset", "detector", "metric"], sort=True)}
        self.wides: dict[tuple[str, ...], dict[str, pd.DataFrame]] = {}

    def explainers(self, key: tuple[str, str, str]) -> dict[str, pd.DataFrame]:
        if key not in self.wides:
            self.wides[key] = per_clip_tables(self.by_key[key]) if key in self.by_key else {}
        return self.wides[key]

    def of(self, key: tuple[str, str, str], explainer: str, param: str) -> pd.Series | None:
        tables = self.explainers(key)
        return clip_values(tables[explainer], param) if explainer in tables else None


def paired_values(a: pd.Series | None, b: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    """The values two explainers share, paired: `[n]` each. A clip scored under several detector seeds is one
    observation, not several: its shared pairs are averaged over the seeds first (seeds nested in clips)."""
    shared = a.index.intersection(b.index).sort_values() if a is not None and b is not None else []
    if not len(shared):
        return np.zeros(0), np.zeros(0)
    x, y = a.loc[shared], b.loc[shared]
    if isinstance(shared, pd.MultiIndex) and "clip_id" in shared.names and not shared.get_level_values(
            "clip_id").is_unique:
        x, y = x.groupby(level="clip_id").mean(), y.groupby(level="clip_id").mean()
    return x.to_numpy(dtype=float), y.to_numpy(dtype=float)


def paired_test(a: pd.Series | None, b: pd.Series | None, alternative: str = "two-sided") -> tuple[int, float]:
    """Wilcoxon on the pairs two explainers share (`paired_values`: clips, seeds averaged): (n_shared, p;
    NaN without pairs)."""
    x, y = paired_values(a, b)
    if not len(x):
        return 0, float("nan")
    return len(x), paired_wilcoxon(x, y, alternative)


def headline_groups(leaderboard: pd.DataFrame, columns: list[str]):
    """(dataset, detector, column, metric, param, group) for every dataset × detector × column the leaderboard
    has: the loop every per-ranking test runs over."""
    for (dataset, detector), group in leaderboard.groupby(GROUP, sort=True):
        for column in columns:
            if f"{column}.mean" in group.columns:
                yield (dataset, detector, column, *split_column(column), group)


def rankings(leaderboard: pd.DataFrame, rows: pd.DataFrame, columns: list[str]):
    """Every headline ranking: (dataset, detector, column, group, order, values) per dataset × detector ×
    column the leaderboard has, `order` its explainers best first, `values` their per-clip values."""
    clips = ClipValues(rows)
    for dataset, detector, column, metric, param, group in headline_groups(leaderboard, columns):
        order = ranked_explainers(group, column)
        values = {ex: clips.of((dataset, detector, metric), ex, param) for ex in order}
        yield dataset, detector, column, group, order, values


def ranked_explainers(group: pd.DataFrame, column: str) -> list[str]:
    """Explainers of one dataset × detector with a finite value in `column`, best first."""
    ranked = pd.DataFrame({"explainer": group["explainer"], "rank": group[f"{column}.rank"].astype(float)})
    ranked = ranked[np.isfinite(group[f"{column}.mean"].astype(float))]
    return ranked.sort_values(["rank", "explainer"])["explainer"].tolist()


def neighbour_tests(leaderboard: pd.DataFrame, rows: pd.DataFrame, columns: list[str],
                    alpha: float = ALPHA) -> pd.DataFrame:
    """Wilcoxon tests between consecutive explainers of every ranking (dataset × detector × column).

    Returns one row per neighbour pair: dataset, detector, metric (the column), position (1 = the pair
    of ranks 1 and 2), better, worse, better_mean, worse_mean, n_shared, p_value, p_holm, distinguishable.
    """
    out = []
    for dataset, detector, column, group, order, values in rankings(leaderboard, rows, columns):
        means = group.set_index("explainer")[f"{column}.mean"]
        pairs = []
        for pos, (better, worse) in enumerate(pairwise(order), start=1):
            n, p = paired_test(values[better], values[worse])
            pairs.append({"dataset": dataset, "detector": detector, "metric": column, "position": pos,
                          "better": better, "worse": worse, "better_mean": float(means[better]),
                          "worse_mean": float(means[worse]), "n_shared": n, "p_value": p})
        adjusted = holm(np.array([r["p_value"] for r in pairs], dtype=float))
        for r, q in zip(pairs, adjusted, strict=True):
            r.update(p_holm=q, distinguishable=bool(np.isfinite(q) and q < alpha))
        out.extend(pairs)
    columns_out = ["dataset", "detector", "metric", "position", "better", "worse", "better_mean", "worse_mean",
                   "n_shared", "p_value", "p_holm", "distinguishable"]
    return pd.DataFrame(out, columns=columns_out)


def control_tests(leaderboard: pd.DataFrame, rows: pd.DataFrame, columns: list[str], control: str = CONTROL,
                  alpha: float = ALPHA, meta: dict[str, MetricMeta] | None = None) -> pd.DataFrame:
    """Does each explainer beat the `control` (the random map) in every headline column?

    One-sided Wilcoxon signed-rank test on the (clip, seed) pairs both were scored on, in the metric's
    direction (explainer > control when higher is better, < when lower is better); the p-values of the
    explainers of one dataset × detector × column are Holm-corrected together. Returns one row per
    dataset, detector, metric (the column), explainer: control, explainer_mean, control_mean, n_shared,
    p_value, p_holm, beats_control. Empty when the suite has no `control` explainer.
    """
    out = []
    clips = ClipValues(rows)
    for dataset, detector, column, metric, param, group in headline_groups(leaderboard, columns):
        key = (dataset, detector, metric)
        tables = clips.explainers(key)
        if control not in tables:
            continue
        base = clips.of(key, control, param)
        means = group.set_index("explainer")[f"{column}.mean"]
        info = (meta or {}).get(metric) or metric_meta(metric)
        alternative = "greater" if info.higher_is_better else "less"
        tests = []
        for explainer in sorted(set(tables) - {control}):
            values = clips.of(key, explainer, param)
            if values is None or base is None:
                continue
            n, p = paired_test(values, base, alternative)
            tests.append({"dataset": dataset, "detector": detector, "metric": column, "explainer": explainer,
                          "control": control, "explainer_mean": float(means.get(explainer, np.nan)),
                          "control_mean": float(means.get(control, np.nan)), "n_shared": n, "p_value": p})
        adjusted = holm(np.array([t["p_value"] for t in tests], dtype=float))
        for t, q in zip(tests, adjusted, strict=True):
            t.update(p_holm=q, beats_control=bool(np.isfinite(q) and q < alpha))
        out.extend(tests)
    columns_out = ["dataset", "detector", "metric", "explainer", "control", "explainer_mean", "control_mean",
                   "n_shared", "p_value", "p_holm", "beats_control"]
    return pd.DataFrame(out, columns=columns_out)


def ranking_chain(tests: pd.DataFrame) -> str:
    """One ranking as text from its neighbour tests (sorted by position): 'a > b ≈ c', where '>' marks a
    distinguishable pair and '≈' one the test cannot separate."""
    if tests.empty:
        return ""
    tests = tests.sort_values("position")
    parts = [str(tests["better"].iloc[0])]
    for _, r in tests.iterrows():
        parts += [">" if r["distinguishable"] else "≈", str(r["worse"])]
    return " ".join(parts)


DEGENERATE_COLUMNS = ["dataset", "detector", "metric", "n_explainers", "reason"]


def degenerate_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Metric columns that cannot rank the explainers of a dataset × detector: the mean is the same for
    every explainer ("constant across explainers": e.g. the L-MAC family on a reconstruction detector, whose
    masked-in input collapses to its own output whatever the mask), or every explainer's CI has zero width
    ("saturated: zero-width CIs", e.g. an agreement of 1 at every keep fraction). Only columns with at least
    two explainers scored count. `table`: the wide leaderboard (`<col>.mean`, `.ci_low`, `.ci_high`).
    Returns DEGENERATE_COLUMNS, one row per (group, column)."""
    out = []
    means = sorted(c for c in table.columns if c.endswith(".mean"))
    for (dataset, detector), group in table.groupby(GROUP, sort=True):
        for col in means:
            name = col.removesuffix(".mean")
            values = group[col].to_numpy(dtype=float)
            scored = np.isfinite(values)
            if scored.sum() < 2:
                continue
            lo = group.get(f"{name}.ci_low")
            hi = group.get(f"{name}.ci_high")
            if np.ptp(values[scored]) == 0:
                reason = f"constant across explainers ({values[scored][0]:.6g})"
            elif lo is not None and hi is not None and (
                    (hi.to_numpy(dtype=float) - lo.to_numpy(dtype=float))[scored] == 0).all():
                reason = "saturated: zero-width CIs for every explainer"
            else:
                continue
            out.append({"dataset": dataset, "detector": detector, "metric": name,
                        "n_explainers": int(scored.sum()), "reason": reason})
    return pd.DataFrame(out, columns=DEGENERATE_COLUMNS)


def smallest_holm_p(n_pairs: int, n_explainers: int) -> float:
    """The smallest Holm-adjusted p a ranking of `n_explainers` can reach with `n_pairs` shared clips: the
    exact two-sided Wilcoxon p of n pairs all in one direction (2 / 2^n) times the k − 1 neighbour pairs."""
    if n_pairs < 1 or n_explainers < 2:
        return 1.0
    return min(1.0, (n_explainers - 1) * 2.0 / 2.0 ** n_pairs)


def top_group(tests: pd.DataFrame) -> list[str]:
    """The explainers tied at the top of one ranking: the leader and every next neighbour down to the first
    distinguishable pair (the neighbour tests of one dataset × detector × metric, any order)."""
    if tests.empty:
        return []
    tests = tests.sort_values("position")
    group = [str(tests["better"].iloc[0])]
    for _, r in tests.iterrows():
        if r["distinguishable"]:
            break
        group.append(str(r["worse"]))
    return group


def borda(ranks: pd.DataFrame) -> pd.DataFrame:
    """Borda count and mean rank of items over metrics.

    ranks: `[items, metrics]` ranks (1 = best, ties share the lower rank, NaN = not ranked there).
    A metric that ranks k items gives an item of rank r the score k − r; unranked items get nothing.
    Returns, per item: n_metrics, mean_rank (over the metrics that rank it), borda, borda_rank
    (1 = most points, ties share the lower rank).
    """
    ranked = ranks.notna()
    points = (ranked.sum(axis=0) - ranks).where(ranked, 0.0)
    out = pd.DataFrame({"n_metrics": ranked.sum(axis=1).astype(int),
                        "mean_rank": ranks.mean(axis=1, skipna=True),
                        "borda": points.sum(axis=1).astype(float)}, index=ranks.index)
    out["borda_rank"] = out["borda"].rank(method="min", ascending=False).astype(int)
    return out


def family_ranks(leaderboard: pd.DataFrame, families: dict[str, list[str]]) -> pd.DataFrame:
    """Borda and mean ranks of the explainers of each dataset × detector within each metric family.

    families: family -> its headline columns. Adds the family 'all' over every family's columns.
    Returns dataset, detector, family, explainer, n_metrics, mean_rank, borda, borda_rank.
    """
    families = {**families, "all": sorted({c for cols in families.values() for c in cols})}
    out = []
    for (dataset, detector), group in leaderboard.groupby(GROUP, sort=True):
        group = group.set_index("explainer")
        for family, cols in sorted(families.items()):
            rank_cols = [f"{c}.rank" for c in cols if f"{c}.rank" in group.columns]
            ranks = group[rank_cols].astype(float)
            ranks = ranks[ranks.notna().any(axis=1)]
            if ranks.empty:
                continue
            table = borda(ranks).reset_index()
            out.append(table.assign(dataset=dataset, detector=detector, family=family))
    cols = ["dataset", "detector", "family", "explainer", "n_metrics", "mean_rank", "borda", "borda_rank"]
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols].sort_values(
        ["dataset", "detector", "family", "borda_rank", "explainer"]).reset_index(drop=True)


def kendall_tau_matrix(ranks: pd.DataFrame) -> pd.DataFrame:
    """Kendall τ-b between the rankings of items `[items, metrics]` (1 = best) for every pair of metrics,
    on the items both rank; NaN where fewer than two shared items or a ranking is constant."""
    names = list(ranks.columns)
    out = pd.DataFrame(np.nan, index=names, columns=names)
    for i, a in enumerate(names):
        for b in names[i:]:
            x, y = ranks[a].to_numpy(dtype=float), ranks[b].to_numpy(dtype=float)
            both = np.isfinite(x) & np.isfinite(y)
            x, y = x[both], y[both]
            if len(x) < 2 or np.unique(x).size < 2 or np.unique(y).size < 2:
                continue
            tau = float(kendalltau(x, y).statistic)
            out.loc[a, b] = out.loc[b, a] = tau
    return out


def metric_agreement(leaderboard: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Kendall τ between metric rankings, averaged over the dataset × detector groups where it is defined.

    Returns one row per ordered pair (metric_a, metric_b): tau (mean over groups) and n_groups.
    """
    rank_cols = [c for c in columns if f"{c}.rank" in leaderboard.columns]
    per_group = []
    for _, group in leaderboard.groupby(GROUP, sort=True):
        ranks = group.set_index("explainer")[[f"{c}.rank" for c in rank_cols]].astype(float)
        ranks.columns = rank_cols
        per_group.append(kendall_tau_matrix(ranks).to_numpy())
    if not per_group:
        return pd.DataFrame(columns=["metric_a", "metric_b", "tau", "n_groups"])
    stack = np.stack(per_group)
    defined = np.isfinite(stack).sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(defined > 0, np.nansum(stack, axis=0) / np.maximum(defined, 1), np.nan)
    return pd.DataFrame([{"metric_a": a, "metric_b": b, "tau": mean[i, j], "n_groups": int(defined[i, j])}
                         for i, a in enumerate(rank_cols) for j, b in enumerate(rank_cols)])
