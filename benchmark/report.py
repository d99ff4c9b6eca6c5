"""The citable part of a leaderboard folder, written after `leaderboard.csv`, `detectors.csv`, `cost.csv`:

    <family>.csv      key columns + detector_auc/detector_flag + that family's metric columns
    ranks.csv         Borda and mean rank of the explainers per dataset × detector × family
    neighbours.csv    Wilcoxon tests between neighbours of every headline ranking (Holm within a ranking)
    power.csv         what each headline ranking can resolve at its n (benchmark/power.py)
    controls.csv      one-sided Wilcoxon tests of every explainer against the random control
    agreement.csv     Kendall τ between the rankings of every pair of headline metrics
    filter_sweep.csv, stft_vs_mel.csv, band_profiles.csv   the frequency study, where the suite ran its parts
    figures/*.png     percentile curves, bar charts per family, metric agreement, attribution galleries
    audio/*.wav       a few listenable explanations copied from the store (the page works without runs/)
    README.md         the main tables in Markdown;  index.html  the same, with figures and players
    manifest.json     git commit, package versions, device, seeds, suite and data hashes, plugin versions

Every CSV is sorted and written with a fixed float format, so the same store gives the same bytes.
Columns are documented in docs/leaderboard-columns.md.

This module holds the tables (family tables, detector flags, lift columns), the figures it draws and
`write_report`, which writes all of the above and puts the page's sections in order; what each section of the
page says is in benchmark/page_sections.py, the page's rendering in benchmark/document.py, the manifest in
benchmark/provenance.py, the listenable examples in benchmark/examples.py.
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import figures
from .claims import claims_table, score_correlation
from .difficulty_sweep import difficulty_figure, difficulty_table
from .document import Block, fmt, markdown, page, with_contents
from .examples import audio_blocks, copy_audio, draw_galleries, example_folders
from .metrics.detection import detection_table
from .page_sections import (
    FLAG_LOW,
    Figures,
    auc_flag,
    claims_blocks,
    cost_blocks,
    degenerate_blocks,
    detector_blocks,
    difficulty_blocks,
    family_blocks,
    frequency_blocks,
    glance_blocks,
    picture_blocks,
    power_blocks,
    rank_blocks,
    saturated_blocks,
    status_blocks,
    training_blocks,
    unranked_blocks,
)
from .power import power_table
from .provenance import build_manifest
from .publish_cache import FigureCache
from .references import without_references
from .specs import FAMILIES
from .statistics import (
    ALPHA,
    CONTROLS,
    OTHER_FAMILY,
    MetricMeta,
    control_tests,
    degenerate_columns,
    family_ranks,
    headline_columns,
    metric_agreement,
    metric_columns,
    metric_meta,
    neighbour_tests,
    split_column,
    unranked_columns,
)
from .store import Store, atomic_write_bytes, atomic_write_text
from .training_curves import curve_figures, training_curves

MIN_AUC = 0.6
FLOAT_FORMAT = "%.6g"
KEYS = ["dataset", "detector", "explainer"]
FAMILY_ORDER = ("faithfulness", "temporal", "localisation", "deletion", "lmac", "synthesis", "audio_quality",
                "sanity", "robustness", "complexity")
NOT_AGAINST_CONTROL = ("sanity", "complexity")
NOT_AGAINST_CONTROL_METRICS = ("sensitivity_max",)  # the random map ignores its input: 0, unbeatable
LIFT_FAMILIES = ("localisation", "temporal")  # their tables carry each headline's lift over every control
# the synthesis sweeps: each agreement metric with its drop (published only where the sweep is not saturated)
SWEEPS = (("agreement", "drop"), ("agreement_random", "drop_random"), ("agreement_input_ig", "drop_input_ig"))
LEAD_FILES = ("leaderboard.csv", "detectors.csv", "cost.csv", "results.parquet")


# --- tables ------------------------------------------------------------------------------------------
def csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return buf.getvalue().encode()


def detector_auc(detectors: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Pooled test AUC (the machine='all' row) of every dataset × detector."""
    if detectors.empty or not {"dataset", "detector", "machine", "auc"} <= set(detectors.columns):
        return {}
    pooled = detectors[detectors["machine"].astype(str) == "all"].sort_values(["dataset", "detector"])
    return {(r.dataset, r.detector): float(r.auc) for r in pooled.drop_duplicates(["dataset", "detector"])
            .itertuples()}


def explained_seeds(manifest: dict) -> list[int] | None:
    """The seeds whose detectors were explained where they are fewer than the suite's seeds (`[evaluate] seeds`);
    None where every trained detector was explained, or none was (a train-only run: its flags read every seed)."""
    seeds, explained = manifest.get("seeds"), manifest.get("explain_seeds")
    if not seeds or not explained or set(explained) >= set(seeds):
        return None
    return sorted(explained)


def explained_auc(detectors: pd.DataFrame, scores: pd.DataFrame, explained: list[int] | None
                  ) -> dict[tuple[str, str], float]:
    """`detector_auc` over the detectors the explanations came from: with `explained` seeds (a subset of the
    suite's), the pooled AUC of those seeds' test scores, so an explainer is flagged by the detectors it
    explained, not by seeds that only trained and scored."""
    if explained is None:
        return detector_auc(detectors)
    return detector_auc(detection_table(scores[scores["detector_seed"].isin(explained)]))


def with_detector_flags(table: pd.DataFrame, aucs: dict[tuple[str, str], float], min_auc: float) -> pd.DataFrame:
    """`table` with detector_auc and detector_flag inserted after its key columns."""
    keys = list(zip(table["dataset"], table["detector"], strict=True))
    auc = [aucs.get(k, float("nan")) for k in keys]
    at = [c for c in table.columns if c in KEYS + ["status", "family"]]
    out = table.copy()
    out.insert(len(at), "detector_auc", auc)
    out.insert(len(at) + 1, "detector_flag", [auc_flag(a, min_auc) for a in auc])
    return out


def family_of(metas: dict[str, MetricMeta], column: str) -> str:
    return metas[split_column(column)[0]].family


def ordered_families(families: set[str]) -> list[str]:
    return [f for f in FAMILY_ORDER if f in families] + sorted(families - set(FAMILY_ORDER))


def family_tables(leaderboard: pd.DataFrame, metas: dict[str, MetricMeta], aucs: dict[tuple[str, str], float],
                  min_auc: float) -> dict[str, pd.DataFrame]:
    """family -> leaderboard key columns, status, detector_auc, detector_flag and the family's metric columns."""
    base = with_detector_flags(leaderboard[KEYS + ["status"]], aucs, min_auc)
    out = {}
    for family in ordered_families({family_of(metas, c) for c in metric_columns(leaderboard)}):
        cols = [c for c in leaderboard.columns if c not in KEYS + ["status"]
                and family_of(metas, c.rsplit(".", 1)[0]) == family]
        out[family] = pd.concat([base, leaderboard[cols]], axis=1)
    return out


def with_lifts(table: pd.DataFrame, leaderboard: pd.DataFrame, columns: list[str],
               controls: pd.DataFrame) -> pd.DataFrame:
    """A family table with, for every headline column C and control K the suite ran, `C.lift_K` (the
    explainer's mean minus the control's, in the group) and `C.p_K` (the Holm-adjusted one-sided Wilcoxon p of
    controls.csv; empty for the control itself)."""
    out = table.copy()
    keys = ["dataset", "detector", "explainer"]
    bases = {c: leaderboard[leaderboard["explainer"] == c].set_index(["dataset", "detector"]) for c in CONTROLS}
    extra = {}
    for column in columns:
        for control, base in bases.items():
            if base.empty or f"{column}.mean" not in leaderboard.columns:
                continue
            ref = [base[f"{column}.mean"].get((d, det), np.nan) for d, det in zip(out["dataset"], out["detector"],
                                                                                 strict=True)]
            extra[f"{column}.lift_{control}"] = out[f"{column}.mean"].to_numpy(dtype=float) - np.array(ref, float)
            tested = controls[(controls["metric"] == column) & (controls["control"] == control)]
            p = tested.set_index(keys)["p_holm"] if len(tested) else pd.Series(dtype=float)
            extra[f"{column}.p_{control}"] = [p.get(tuple(k), np.nan) for k in out[keys].itertuples(index=False)]
    return pd.concat([out, pd.DataFrame(extra, index=out.index)], axis=1) if extra else out


def saturated_sweeps(leaderboard: pd.DataFrame) -> pd.DataFrame:
    """Every synthesis sweep (an agreement metric and its drop) of a dataset × detector × explainer whose two ends
    agree, so that no kept fraction can move the decision on average (`sweep_saturated`): columns dataset,
    detector, explainer, sweep (the agreement metric), reason."""
    from .metrics.synthesis import sweep_saturated
    out = []
    for agreement, _ in SWEEPS:
        ends = [f"{agreement}[100].mean", f"{agreement}[0].mean"]
        if not set(ends) <= set(leaderboard.columns):
            continue
        for _, r in leaderboard.iterrows():
            full, empty = float(r[ends[0]]), float(r[ends[1]])
            reason = sweep_saturated({100: full, 0: empty}) if np.isfinite(full) and np.isfinite(empty) else None
            if reason:
                out.append({"dataset": r["dataset"], "detector": r["detector"], "explainer": r["explainer"],
                            "sweep": agreement, "reason": reason})
    return pd.DataFrame(out, columns=["dataset", "detector", "explainer", "sweep", "reason"])


def without_saturated(table: pd.DataFrame, saturated: pd.DataFrame) -> pd.DataFrame:
    """`table` with the values of every saturated sweep (its agreement and drop columns) left out, and for each
    sweep a `<agreement>.saturated` column holding why (empty where the sweep is published)."""
    out = table.copy()
    for agreement, drop in SWEEPS:
        hit = saturated[saturated["sweep"] == agreement]
        if not any(c.startswith(f"{agreement}[") for c in out.columns):
            continue
        reasons = {(r.dataset, r.detector, r.explainer): r.reason for r in hit.itertuples()}
        why = [reasons.get(k, "") for k in zip(out["dataset"], out["detector"], out["explainer"], strict=True)]
        gone = np.array([bool(w) for w in why])
        for c in [c for c in out.columns if c.startswith((f"{agreement}[", f"{drop}["))]:
            out.loc[gone, c] = np.nan
        out[f"{agreement}.saturated"] = why
    return out


# --- figures and the report --------------------------------------------------------------------------
def _remove_stale(folder: Path, families: set[str]) -> None:
    """Outputs of an earlier publish that this one would not rewrite (figures, audio, vanished families). The
    families that can have a table are the spec's, not the installed metrics': a publish reads no plugin."""
    for sub in ("figures", "audio"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    for family in (set(FAMILIES) | {OTHER_FAMILY}) - families:
        (folder / f"{family}.csv").unlink(missing_ok=True)


def _figure_title(dataset: str, detector: str, aucs: dict, min_auc: float) -> str:
    auc = aucs.get((dataset, detector))
    low = auc_flag(auc, min_auc) == FLAG_LOW
    return f"{dataset} / {detector} (AUC {fmt(auc, 2)}{' ⚠ low' if low else ''})"


def _with_fit_log(record: dict, store: Store) -> dict:
    """An evaluate record whose cell scored stored maps without loading its interpreter carries no fit log: the
    explain step that trained (or loaded) it recorded one."""
    if record.get("cell") != "evaluate" or record.get("fit_log") or not record.get("explain_key"):
        return record
    return {**record, "fit_log": (store.status(record["explain_key"]) or {}).get("fit_log") or {}}


def frequency_tables(detectors: pd.DataFrame, records: list[dict], scores: pd.DataFrame, store: Store,
                     bands: bool) -> dict[str, pd.DataFrame]:
    """The frequency study's CSVs that this suite's results support (none for a suite without its parts);
    `scores`: the test clips' anomaly-score rows (their machine, section and label); `bands`: the suite ran
    the band metrics, so its explanations are profiled per band."""
    from .frequency_study import band_profiles, feature_table, sweep_table
    made = {"filter_sweep": sweep_table(detectors, records), "stft_vs_mel": feature_table(detectors),
            "band_profiles": band_profiles(store, records, scores) if bands else None}
    return {name: table for name, table in made.items() if table is not None and not table.empty}


def frequency_figures(tables: dict[str, pd.DataFrame], folder: Path) -> dict[str, list[Path]]:
    from .frequency_study import band_heatmaps, sweep_figure
    return {"filter_sweep": sweep_figure(tables["filter_sweep"], folder) if "filter_sweep" in tables else [],
            "band_profiles": band_heatmaps(tables["band_profiles"], folder) if "band_profiles" in tables else []}


def training_figures(training: pd.DataFrame, folder: Path, cache: FigureCache) -> list[Path | None]:
    """The learning-curve figures (training_curves.curve_figures), one per dataset, through the figure cache."""
    out = []
    for dataset, group in training.groupby("dataset", sort=True):
        path = folder / f"training-{figures.safe_name(dataset)}.png"
        inputs = group.reset_index(drop=True)
        out.append(cache.draw(path, inputs, lambda g=inputs: curve_figures(g, folder)[0]))
    return out


def _write_figures(folder: Path, leaderboard: pd.DataFrame, metas: dict[str, MetricMeta],
                   by_family: dict[str, list[str]], agreement: pd.DataFrame, cells: list[tuple[dict, Path]],
                   aucs: dict, min_auc: float, cache: FigureCache) -> Figures:
    titles = {k: _figure_title(*k, aucs, min_auc) for k in
              leaderboard[["dataset", "detector"]].drop_duplicates().itertuples(index=False, name=None)}
    fig_dir = folder / "figures"
    curves = figures.percentile_curves(leaderboard, fig_dir, titles, {m for m, i in metas.items() if i.per_percentile},
                                       cache=cache)
    bars: dict[str, list[Path]] = {}
    for family, cols in by_family.items():
        for dataset, group in leaderboard.groupby("dataset", sort=True):
            labels = {d: d + (" ⚠ low AUC" if auc_flag(aucs.get((dataset, d)), min_auc) == FLAG_LOW else "")
                      for d in group["detector"].unique()}
            path = fig_dir / f"bars-{figures.safe_name(dataset, family)}.png"
            title = f"{family} — {dataset}"
            stats = ("mean", "ci_low", "ci_high", "chance")
            used = ["detector", "explainer", *(f"{c}.{s}" for c in cols for s in stats)]
            inputs = (group[[c for c in used if c in group.columns]].reset_index(drop=True), cols, title, labels)
            path = cache.draw(path, inputs, lambda g=group, c=cols, p=path, t=title, lab=labels:
                              figures.metric_bars(g, c, p, title=t, detector_labels=lab))
            if path is not None:
                bars.setdefault(family, []).append(path)
    galleries = draw_galleries(cells, fig_dir, titles, cache)
    heatmap = cache.draw(fig_dir / "agreement.png", agreement,
                         lambda: figures.agreement_heatmap(agreement, fig_dir / "agreement.png"))
    return Figures(curves, bars, heatmap, galleries)


def _stage(stages: Any, name: str) -> None:
    if stages is not None:
        stages.stage(name)


def write_report(folder: Path, *, suite_name: str, leaderboard: pd.DataFrame, detectors: pd.DataFrame,
                 rows: pd.DataFrame, records: list[dict], store: Store, manifest: dict,
                 min_auc: float = MIN_AUC, alpha: float = ALPHA, stages: Any = None) -> None:
    """Write the family CSVs, statistics, figures, audio, README.md, index.html and manifest.json of one
    suite into `folder` (which already holds leaderboard.csv, detectors.csv and cost.csv)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    leaderboard = leaderboard.copy()  # one block: the wide table is built column by column
    claims = claims_table(leaderboard, rows, alpha)  # detector claims need the test scores
    correlation = score_correlation(rows)
    scores = rows[rows["metric"] == "anomaly_score"]  # every test clip's machine, section and label
    rows = rows[rows["metric"] != "anomaly_score"]
    metas = {m: metric_meta(m) for m in sorted({split_column(c)[0] for c in metric_columns(leaderboard)})}
    explained = explained_seeds(manifest)
    aucs = explained_auc(detectors, scores, explained)
    tables = family_tables(leaderboard, metas, aucs, min_auc)
    _remove_stale(folder, set(tables))
    headlines = headline_columns(leaderboard, metas)
    by_family = {f: [c for c in headlines if family_of(metas, c) == f] for f in tables}
    ranks = with_detector_flags(family_ranks(leaderboard, by_family), aucs, min_auc)
    _stage(stages, "statistics")
    tests = neighbour_tests(leaderboard, rows, headlines, alpha)
    # a random map is the ideal of a sanity check and the worst case of a complexity score, and it ignores
    # the input (sensitivity 0 by construction): no null there
    tested = [c for c in headlines if family_of(metas, c) not in NOT_AGAINST_CONTROL
              and split_column(c)[0] not in NOT_AGAINST_CONTROL_METRICS]
    controls = pd.concat([control_tests(leaderboard, rows, tested, control=c, alpha=alpha, meta=metas)
                          for c in CONTROLS], ignore_index=True)
    for family in LIFT_FAMILIES:
        if family in tables:
            tables[family] = with_lifts(tables[family], leaderboard, by_family[family], controls)
    # a metric kept for a paper's parity but not ranked (ff_segment) is published beside the controls' levels
    unranked = unranked_columns(leaderboard, metas)
    unranked_by_family = {f: [c for c in unranked if family_of(metas, c) == f] for f in tables}
    unranked_controls = pd.concat([control_tests(leaderboard, rows, unranked, control=c, alpha=alpha, meta=metas)
                                   for c in CONTROLS], ignore_index=True)
    for family, cols in unranked_by_family.items():
        if cols:
            tables[family] = with_lifts(tables[family], leaderboard, cols, unranked_controls)
    # a synthesis sweep whose two ends agree says nothing: its values are left out, the table says why
    saturated = saturated_sweeps(leaderboard)
    if "synthesis" in tables:
        tables["synthesis"] = without_saturated(tables["synthesis"], saturated)
    for family, table in tables.items():
        atomic_write_bytes(folder / f"{family}.csv", csv_bytes(table))
    agreement = metric_agreement(leaderboard, headlines)
    degenerate = without_references(degenerate_columns(leaderboard))
    atomic_write_bytes(folder / "degenerate.csv", csv_bytes(degenerate))
    atomic_write_bytes(folder / "ranks.csv", csv_bytes(ranks))
    atomic_write_bytes(folder / "neighbours.csv", csv_bytes(tests))
    power = power_table(leaderboard, rows, headlines, alpha)
    atomic_write_bytes(folder / "power.csv", csv_bytes(power))
    atomic_write_bytes(folder / "controls.csv", csv_bytes(controls))
    atomic_write_bytes(folder / "agreement.csv", csv_bytes(agreement))
    atomic_write_bytes(folder / "claims.csv", csv_bytes(claims))

    training = training_curves([_with_fit_log(r, store) for r in records])
    atomic_write_bytes(folder / "training.csv", csv_bytes(training))

    frequency = frequency_tables(detectors, records, scores, store, "band_mass_spearman" in set(rows["metric"]))
    for name, table in frequency.items():
        atomic_write_bytes(folder / f"{name}.csv", csv_bytes(table))
    difficulty = difficulty_table(detectors)
    if difficulty is not None:
        atomic_write_bytes(folder / "difficulty_sweep.csv", csv_bytes(difficulty))

    _stage(stages, "figures and audio")
    frequency_pics = frequency_figures(frequency, folder / "figures")
    difficulty_pics = [] if difficulty is None else difficulty_figure(difficulty, folder / "figures")
    figure_cache = FigureCache(store.root)  # hashes the plotting code once for every figure below
    training_pics = [p for p in training_figures(training, folder / "figures", figure_cache) if p]
    cells = example_folders(store, manifest)
    # the page and its figures show no value of a saturated synthesis sweep (leaderboard.csv keeps them all)
    shown = without_saturated(leaderboard, saturated)
    shown = shown[[c for c in shown.columns if not c.endswith(".saturated")]]
    pics = _write_figures(folder, shown, metas, by_family, agreement, cells, aucs, min_auc, figure_cache)
    audio = copy_audio(cells, folder)

    rel = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
    files = [*LEAD_FILES, *(f"{f}.csv" for f in tables), "ranks.csv", "neighbours.csv", "power.csv",
             "controls.csv", "agreement.csv", "degenerate.csv", "claims.csv", "training.csv",
             *(f"{n}.csv" for n in frequency), "difficulty_sweep.csv"]
    files = [n for n in files if (folder / n).is_file()] + ["manifest.json"]
    blocks = [Block("h1", f"audio-xai-bench — suite '{suite_name}'"),
              Block("p", f"Explainers × detectors × datasets. Each metric cell: mean [95 % bootstrap CI over "
                         f"clips] #rank within the dataset × detector (1 = best in the metric's direction). Rebuild "
                         f"with `python -m benchmark publish --suite {suite_name}`; columns are documented in "
                         f"docs/leaderboard-columns.md."),
              Block("links", items=[(n, n) for n in files])]
    blocks += glance_blocks(by_family, tests, controls, leaderboard, aucs, min_auc, alpha)
    blocks += power_blocks(power, [cols[0] for cols in by_family.values() if cols])
    blocks += detector_blocks(detectors, aucs, min_auc, explained) + training_blocks(training, training_pics, rel)
    blocks += difficulty_blocks(difficulty, difficulty_pics, rel)
    blocks += rank_blocks(ranks, list(tables))
    for family in tables:
        blocks += family_blocks(family, by_family[family], shown, ranks, tests, controls, aucs, min_auc, alpha)
        blocks += saturated_blocks(saturated[saturated["sweep"].isin(
            [split_column(c)[0] for c in by_family[family]])])
        blocks += unranked_blocks(unranked_by_family[family], leaderboard, unranked_controls, alpha)
        blocks += [Block("img", f"{family} bar chart", src=rel(p)) for p in pics.bars.get(family, [])]
    blocks += degenerate_blocks(degenerate) + claims_blocks(claims, correlation, alpha)
    blocks += frequency_blocks(frequency, frequency_pics, rel, leaderboard)
    blocks += picture_blocks(pics, rel) + audio_blocks(audio) + cost_blocks(records) + status_blocks(records)
    _stage(stages, "page and manifest")
    blocks = with_contents(blocks)
    atomic_write_text(folder / "README.md", markdown(blocks))
    atomic_write_text(folder / "index.html", page(blocks, f"{suite_name} leaderboard"))
    info = build_manifest(folder, suite_name=suite_name, manifest=manifest, records=records, rows=rows,
                          min_auc=min_auc, alpha=alpha)
    atomic_write_text(folder / "manifest.json", json.dumps(info, indent=1, sort_keys=True, default=str) + "\n")
