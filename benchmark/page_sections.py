"""What each section of the leaderboard page says: the Blocks (benchmark/document.py) of the at-a-glance
table, power, detectors, training, difficulty sweep, family ranks, one section per family (with its unranked
columns), degenerate columns, the source papers' claims, the frequency study, figures, cost and the cells not
done. `write_report` (benchmark/report.py) computes the tables and figures and puts these sections in order.

The detector flag (`auc_flag`: ok / low_auc / no_auc) lives here because the page's headings read it; the
detector_flag column of the tables is built from it in report.py. `Figures` is what the figure writing of
report.py hands to the picture sections: the paths of the figures it drew.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .document import Block, Table, fmt
from .examples import gallery_blocks
from .power import power_summary
from .references import REFERENCE_PARAMS
from .statistics import CONTROLS, ranking_chain, smallest_holm_p, split_column, top_group

FLAG_OK, FLAG_LOW, FLAG_UNKNOWN = "ok", "low_auc", "no_auc"
BAND_METRICS = ("band_mass_spearman", "band_top_hit")


def auc_flag(auc: float | None, min_auc: float) -> str:
    if auc is None or not np.isfinite(auc):
        return FLAG_UNKNOWN
    return FLAG_LOW if auc < min_auc else FLAG_OK


def _group_heading(dataset: str, detector: str, aucs: dict, min_auc: float) -> str:
    auc = aucs.get((dataset, detector))
    flag = auc_flag(auc, min_auc)
    if flag == FLAG_LOW:
        return f"{dataset} / {detector} — ⚠ detector AUC {fmt(auc)} < {min_auc}: explanations of a weak detector"
    return f"{dataset} / {detector} — detector AUC {fmt(auc)}"


def _mean_ci(row: pd.Series, col: str) -> str:
    """'mean [ci_low, ci_high]' of a column in a leaderboard row, or '–'."""
    mean = row.get(f"{col}.mean")
    if mean is None or not np.isfinite(mean):
        return "–"
    return f"{fmt(mean)} [{fmt(row[f'{col}.ci_low'])}, {fmt(row[f'{col}.ci_high'])}]"


def _metric_cell(row: pd.Series, col: str, rankable: bool = True) -> str:
    cell = _mean_ci(row, col)
    if cell == "–":
        return cell
    rank = row.get(f"{col}.rank")
    if rank is None or not np.isfinite(rank):
        badge = " (not ranked: degenerate)"
    else:
        badge = f" #{int(rank)}" if rankable else " ≈ (n too small to rank)"
    return f"{cell}{badge}"


def _control_items(controls: pd.DataFrame, dataset: str, detector: str, cols: list[str]) -> list[str]:
    """Per column and control, the explainers that beat it: 'M[P] vs random (n 8): a (p 0.001), b (p 0.02)'."""
    mine = controls[(controls["dataset"] == dataset) & (controls["detector"] == detector)]
    items = []
    for c in cols:
        for control in CONTROLS:
            t = mine[(mine["metric"] == c) & (mine["control"] == control)]
            if t.empty:
                continue
            winners = t[t["beats_control"]].sort_values(["p_holm", "explainer"])
            names = ", ".join(f"{r.explainer} (p {fmt(r.p_holm, 2)})" for r in winners.itertuples()) or "none"
            items.append(f"{c} vs {control} (n {int(t['n_shared'].max())}): {names}")
    return items


def controls_run(controls: pd.DataFrame) -> list[str]:
    """The controls the suite ran (those controls.csv tests against), in CONTROLS order."""
    return [c for c in CONTROLS if (controls["control"] == c).any()]


def glance_blocks(by_family: dict[str, list[str]], tests: pd.DataFrame, controls: pd.DataFrame,
                   leaderboard: pd.DataFrame, aucs: dict, min_auc: float, alpha: float) -> list[Block]:
    """The first screen: per dataset × detector and family (its first headline metric), the explainers tied at
    the top by the neighbour tests, each marked with the controls it beats."""
    families = [f for f, cols in by_family.items() if cols]
    if not families or tests.empty:
        return []
    present = controls_run(controls) or list(CONTROLS)
    rows = []
    for (dataset, detector), _ in leaderboard.groupby(["dataset", "detector"], sort=True):
        cells = []
        for family in families:
            column = by_family[family][0]
            t = tests[(tests["dataset"] == dataset) & (tests["detector"] == detector) & (tests["metric"] == column)]
            group = top_group(t)
            if not group:
                cells.append("–")
                continue
            mine = controls[(controls["dataset"] == dataset) & (controls["detector"] == detector)
                            & (controls["metric"] == column)]
            c = mine[mine["beats_control"].astype(bool)]
            marks = []
            for ex in group:
                beaten = [ctl for ctl in CONTROLS if ((c["explainer"] == ex) & (c["control"] == ctl)).any()]
                tested = (mine["explainer"] == ex).any()
                tag = f" (> {', '.join(beaten)})" if beaten else (" (beats no control)" if tested else "")
                tag = " (control)" if ex in CONTROLS and not beaten else tag
                marks.append(ex + tag)
            n = int(t["n_shared"].max()) if "n_shared" in t.columns and len(t) else 0
            cells.append(f"{column}, n {n}: " + " ≈ ".join(marks))
        rows.append([dataset, f"{detector} ({auc_flag(aucs.get((dataset, detector)), min_auc)})", *cells])
    return [Block("h2", "At a glance"),
            Block("p", f"Per dataset × detector and family: the explainers tied at the top of the family's first "
                       f"headline metric (the leader and each next neighbour until the first pair the Wilcoxon test "
                       f"separates at α = {alpha}, Holm-corrected), each marked with the controls "
                       f"({', '.join(present)}) it beats (one-sided Wilcoxon, Holm). A long tie means the "
                       f"metric cannot rank these explainers at this n."),
            Block("table", table=Table(["dataset", "detector (AUC flag)", *families], rows))]


def family_blocks(family: str, cols: list[str], leaderboard: pd.DataFrame, ranks: pd.DataFrame,
                   tests: pd.DataFrame, controls: pd.DataFrame, aucs: dict, min_auc: float,
                   alpha: float) -> list[Block]:
    blocks = [Block("h2", f"{family.capitalize()}")]
    for (dataset, detector), group in leaderboard.groupby(["dataset", "detector"], sort=True):
        present = [c for c in cols if f"{c}.mean" in group.columns and group[f"{c}.mean"].notna().any()]
        if not present:
            continue
        fam = ranks[(ranks["dataset"] == dataset) & (ranks["detector"] == detector) & (ranks["family"] == family)]
        fam = fam.set_index("explainer")
        order = list(fam.index) + sorted(set(group["explainer"]) - set(fam.index))
        group = group.set_index("explainer")
        header = ["explainer", "Borda rank", "mean rank"]
        for c in present:
            chance = group[f"{c}.chance"].to_numpy(dtype=float) if f"{c}.chance" in group.columns else np.array([])
            header.append(f"{c} (chance {fmt(float(np.nanmean(chance)))})" if np.isfinite(chance).any() else c)
        # the reference levels of these metrics on each row's own clips (the input itself, the oracle), unranked
        references = [f"{split_column(c)[0]}[{level}]" for c in present for level in REFERENCE_PARAMS
                      if f"{split_column(c)[0]}[{level}].mean" in group.columns
                      and group[f"{split_column(c)[0]}[{level}].mean"].notna().any()]
        header += [f"{r} (reference level)" for r in references]
        header.append("status")
        # a column whose neighbour tests could not reject even with every clip agreeing prints no ranks
        # and a column only one explainer has (the synthesis family: EnCodec alone) has nothing to rank
        rankable, alone = {}, {}
        for c in present:
            counts = group[f"{c}.n"].to_numpy(dtype=float) if f"{c}.n" in group.columns else np.array([np.inf])
            scored = np.isfinite(group[f"{c}.mean"].to_numpy(dtype=float))
            n = int(np.nanmin(counts[scored])) if scored.any() and np.isfinite(counts[scored]).any() else 10 ** 6
            rankable[c] = smallest_holm_p(n, int(scored.sum())) < alpha
            alone[c] = int(scored.sum()) < 2
        rows = []
        for ex in order:
            r = group.loc[ex]
            rows.append([ex, fmt(fam["borda_rank"].get(ex)), fmt(fam["mean_rank"].get(ex)),
                         *[_mean_ci(r, c) if alone[c] else _metric_cell(r, c, rankable[c]) for c in present],
                         *[_mean_ci(r, ref) for ref in references], str(r["status"])])
        blocks += [Block("h3", _group_heading(dataset, detector, aucs, min_auc)),
                   Block("table", table=Table(header, rows))]
        chains = []
        for c in present:
            t = tests[(tests["dataset"] == dataset) & (tests["detector"] == detector) & (tests["metric"] == c)]
            if not t.empty:
                chains.append(f"{c}: {ranking_chain(t)}")
        if chains:
            blocks.append(Block("p", f"Ranked neighbours (Wilcoxon on shared clips, Holm within each ranking, "
                                     f"'>' = distinguishable at α = {alpha}, '≈' = not):"))
            blocks.append(Block("list", items=chains))
        beaten = _control_items(controls, dataset, detector, present)
        if beaten:
            present_controls = controls_run(controls)
            plural = "s" if len(present_controls) > 1 else ""
            blocks.append(Block("p", f"Above the {' and '.join(present_controls)} control{plural} (one-sided "
                                     f"Wilcoxon on shared clips, Holm over the explainers, α = {alpha}):"))
            blocks.append(Block("list", items=beaten))
    return blocks


def unranked_blocks(cols: list[str], leaderboard: pd.DataFrame, controls: pd.DataFrame, alpha: float) -> list[Block]:
    """A family's unranked columns (kept for a source paper's parity) read against the controls: per dataset ×
    detector, each explainer's mean [CI] and its lift over every control with the one-sided Wilcoxon p (Holm)."""
    runs = [k for k in CONTROLS if (controls["control"] == k).any()] if len(controls) else []
    blocks = []
    for c in cols:
        if not runs or f"{c}.mean" not in leaderboard.columns:
            continue
        rows = []
        for (dataset, detector), group in leaderboard.groupby(["dataset", "detector"], sort=True):
            group = group[group[f"{c}.mean"].notna()].set_index("explainer").sort_index()
            mine = controls[(controls["dataset"] == dataset) & (controls["detector"] == detector)
                            & (controls["metric"] == c)]
            for explainer, r in group.iterrows():
                lifts = []
                for k in runs:
                    t = mine[(mine["control"] == k) & (mine["explainer"] == explainer)]
                    p = f" (p {fmt(float(t['p_holm'].iloc[0]), 2)})" if len(t) else ""
                    base = group[f"{c}.mean"].get(k)
                    lifts.append("–" if base is None else f"{fmt(r[f'{c}.mean'] - base)}{p}")
                rows.append([dataset, detector, explainer, _mean_ci(r, c), *lifts])
        if rows:
            blocks += [Block("p", f"Not ranked, read against the controls: {c}, published for the source paper's "
                                  f"parity (docs/leaderboard-columns.md says why it cannot rank). Lift = the "
                                  f"explainer's mean minus the control's; p = one-sided Wilcoxon on shared clips, "
                                  f"Holm over the explainers, α = {alpha}."),
                       Block("table", table=Table(["dataset", "detector", "explainer", c,
                                                   *[f"lift over {k} (p)" for k in runs]], rows))]
    return blocks


def rank_blocks(ranks: pd.DataFrame, families: list[str]) -> list[Block]:
    """One row per dataset × detector × explainer, one column per family: Borda rank (mean rank)."""
    if ranks.empty:
        return []
    cells = {(r.dataset, r.detector, r.explainer, r.family): f"{r.borda_rank} ({fmt(r.mean_rank, 2)})"
             for r in ranks.itertuples()}
    overall = ranks[ranks["family"] == "all"].sort_values(["dataset", "detector", "borda_rank", "explainer"])
    columns = [*families, "all"]
    rows = [[r.dataset, r.detector, r.explainer, r.detector_flag,
             *[cells.get((r.dataset, r.detector, r.explainer, f), "–") for f in columns]]
            for r in overall.itertuples()]
    return [Block("h2", "Family ranks"),
            Block("p", "Each cell: Borda rank (mean rank) of the explainer over the family's headline metrics; a "
                       "metric ranking k explainers gives k − rank Borda points; 'all' pools every family "
                       "(ranks.csv)."),
            Block("table", table=Table(["dataset", "detector", "explainer", "detector flag", *columns], rows))]


def power_blocks(power: pd.DataFrame, first_headlines: list[str]) -> list[Block]:
    """What this board can resolve at its n: the summary sentence and each family's first headline ranking."""
    blocks = [Block("h2", "Power at this n"), Block("p", power_summary(power))]
    shown = power[power["metric"].isin(first_headlines)]
    if not shown.empty:
        rows = [[r["dataset"], r["detector"], r["metric"], fmt(r["n_clips"]), fmt(r["n_explainers"]),
                 "yes" if r["resolvable"] else "no", fmt(r["mde"]), fmt(r["top_gap"]), fmt(r["clips_for_top_gap"])]
                for _, r in shown.iterrows()]
        blocks.append(Block("table", table=Table(["dataset", "detector", "ranking", "n", "explainers",
                                                  "any pair resolvable", "detectable difference (80 % power)",
                                                  "top-two gap", "clips to resolve it"], rows)))
    return blocks


def claims_blocks(claims: pd.DataFrame, correlation: pd.DataFrame, alpha: float) -> list[Block]:
    """The source papers' claims with this board's verdicts (claims.csv), and the AE-MAE score correlation."""
    blocks = [Block("h2", "Claims of the source papers"),
              Block("p", f"Each headline claim tested on this board's per-clip values (detector claims over seeds): "
                         f"reproduced / contradicted when the one-sided paired Wilcoxon test in either direction "
                         f"gives p < {alpha}; otherwise not resolved at this n, or not testable here with the "
                         f"reason (claims.csv, with the mean paired difference and its 95 % bootstrap CI).")]
    if not correlation.empty:
        text = "; ".join(f"{r.dataset} {r.spearman:.3f} (n = {r.n})" for r in correlation.itertuples())
        blocks.append(Block("p", f"AE-MAE correlation of test anomaly scores (Spearman, clip x seed): {text}. Near 1 "
                                 f"the two detectors rank the clips alike, and their explanations cannot differ much."))
    rows = [[r.claim, r.dataset, r.detector, r.paper, r.ours or "–",
             "–" if not np.isfinite(r.difference) else f"{r.difference:+.3f} [{fmt(r.ci_low)}, {fmt(r.ci_high)}]",
             str(r.n), fmt(r.p), r.verdict + (f" ({r.reason})" if r.reason else "")] for r in claims.itertuples()]
    if rows:
        blocks.append(Block("table", table=Table(["claim", "dataset", "detector", "paper", "ours",
                                                  "difference [95 % CI]", "n", "p", "verdict"], rows)))
    return blocks


def saturated_blocks(saturated: pd.DataFrame) -> list[Block]:
    """The synthesis sweeps left out because their two ends agree, each with its reason (`<agreement>.saturated`
    in synthesis.csv)."""
    if saturated.empty:
        return []
    rows = [[r.dataset, r.detector, r.explainer, r.sweep, r.reason] for r in saturated.itertuples()]
    return [Block("p", "Saturated sweeps, not published: with every latent element kept and with none the detector "
                       "decides alike on average, so no kept fraction can show what the explanation holds."),
            Block("table", table=Table(["dataset", "detector", "explainer", "sweep", "reason"], rows))]


def degenerate_blocks(degenerate: pd.DataFrame) -> list[Block]:
    """The columns left out of ranks, Borda and agreement, each with its reason (degenerate.csv)."""
    if degenerate.empty:
        return []
    rows = [[r.dataset, r.detector, r.metric, str(r.n_explainers), r.reason] for r in degenerate.itertuples()]
    return [Block("h2", "Degenerate columns (not ranked)"),
            Block("p", "These columns cannot tell the explainers of a dataset × detector apart: the mean is constant "
                       "across explainers, or saturated (every CI has zero width). They get no rank and count "
                       "in neither Borda nor the metric agreement (degenerate.csv)."),
            Block("table", table=Table(["dataset", "detector", "column", "explainers", "reason"], rows))]


def _band_rows(leaderboard: pd.DataFrame) -> list[list[str]]:
    """Per dataset × detector × explainer: each band metric's mean [CI] and its chance level."""
    columns = [m for m in BAND_METRICS if f"{m}.mean" in leaderboard.columns]
    out = []
    for _, r in leaderboard.sort_values(["dataset", "detector", "explainer"]).iterrows():
        if not any(np.isfinite(float(r[f"{m}.mean"])) for m in columns):
            continue
        cells = [f"{fmt(r[f'{m}.mean'])} [{fmt(r[f'{m}.ci_low'])}, {fmt(r[f'{m}.ci_high'])}] (chance "
                 f"{fmt(r[f'{m}.chance'])}, n {fmt(r[f'{m}.n'])})" for m in columns]
        out.append([r["dataset"], r["detector"], r["explainer"], *cells])
    return out


def frequency_blocks(tables: dict[str, pd.DataFrame], pics: dict[str, list[Path]], rel,
                      leaderboard: pd.DataFrame) -> list[Block]:
    if not tables:
        return []
    blocks = [Block("h2", "Frequency study"),
              Block("p", "After the DCASE 2022 SLIME paper: which frequency bands the detectors rely on. Band "
                         "metrics (band_mass_spearman: rank correlation of each band's share of positive relevance "
                         "with the truth mask's share, chance 0; band_top_hit: the most relevant band holds the most "
                         "truth, chance = tied top bands / 8) are in the localisation table; below, the filter "
                         "sweep, STFT vs mel input and the median band profiles.")]
    bands = _band_rows(leaderboard)
    if bands:
        blocks += [Block("h3", "Band metrics (mean [95 % CI], against their chance levels)"),
                   Block("table", table=Table(["dataset", "detector", "explainer",
                                               *[m for m in BAND_METRICS if f"{m}.mean" in leaderboard.columns]],
                                              bands))]
    sweep = tables.get("filter_sweep")
    if sweep is not None:
        pooled = sweep[sweep["machine"] == "all"]
        rows = [[r["dataset"], r["detector"], r["filter"], f"{r['cutoff_hz']:.0f}", fmt(r["auc"]),
                 fmt(r["unfiltered_auc"]), fmt(r["aux_accuracy"])] for _, r in pooled.iterrows()]
        blocks += [Block("h3", "Filter sweep (detectors re-trained per cutoff; filter_sweep.csv has every section)"),
                   Block("p", "Each AUC is one training per cutoff (the suite's seeds): differences of a few "
                              "hundredths between neighbouring cutoffs are within a retraining's spread."),
                   Block("table", table=Table(["dataset", "detector", "filter", "cutoff Hz", "AUC", "unfiltered AUC",
                                               "aux. accuracy"], rows))]
        blocks += [Block("img", "AUC versus filter cutoff", src=rel(p)) for p in pics.get("filter_sweep", [])]
    features = tables.get("stft_vs_mel")
    if features is not None:
        rows = [[r["dataset"], r["detector"], r["machine"], r["section"], fmt(r["auc_mel"]), fmt(r["auc_stft"]),
                 fmt(r["auc_gain_stft"])] for _, r in features.iterrows()]
        blocks += [Block("h3", "STFT (25 ms / 10 ms) vs mel input"),
                   Block("table", table=Table(["dataset", "detector", "machine", "section", "AUC mel", "AUC STFT",
                                               "STFT − mel"], rows))]
    if "band_profiles" in tables:
        blocks += [Block("h3", "Median band profiles per machine × section × condition (band_profiles.csv)"),
                   Block("p", "Each panel: an explainer's median share of positive relevance per mel band (rows, "
                              "low bands at the bottom) for inliers (N) and anomalies (A) of each machine/section. "
                              "SLIME explaining the EER decision gives an inlier that no switched-off band makes "
                              "anomalous all-zero coefficients, hence a flat 1/8 profile; the random control is "
                              "flat by construction.")]
        blocks += [Block("img", "band heatmap", src=rel(p)) for p in pics.get("band_profiles", [])]
    return blocks


def difficulty_blocks(table: pd.DataFrame | None, pics: list[Path], rel) -> list[Block]:
    """The difficulty sweep: pooled AUC per detector and difficulty, and how close the hardest level is to chance."""
    if table is None:
        return []
    levels = sorted(table["difficulty"].unique())
    rows = []
    for (dataset, det), part in table.groupby(["dataset", "detector"], sort=True):
        by_level = dict(zip(part["difficulty"], part["auc"], strict=True))
        rows.append([dataset, det, *(fmt(by_level.get(v, float("nan"))) for v in levels),
                     fmt(part["default_auc"].iloc[0])])
    hardest = table[table["difficulty"] == levels[-1]]
    blocks = [Block("h3", "Difficulty sweep (difficulty_sweep.csv)"),
              Block("p", f"Every detector re-trained on the data generated again at each difficulty (0 = obvious "
                         f"anomalies, 1 = the faintest the generator renders: each anomaly still dominates at "
                         f"least one time-frequency bin, its ground truth, so 1 is not chance for a detector "
                         f"that finds such a bin), pooled test AUC, one training per level and seed. At "
                         f"difficulty {levels[-1]:g} the AUCs run from {fmt(hardest['auc'].min())} to "
                         f"{fmt(hardest['auc'].max())} (chance 0.5)."),
              Block("table", table=Table(["dataset", "detector", *(f"d = {v:g}" for v in levels),
                                          "suite's own data"], rows))]
    return blocks + [Block("img", "AUC versus difficulty", src=rel(p)) for p in pics]


def detector_blocks(detectors: pd.DataFrame, aucs: dict, min_auc: float,
                    explained: list[int] | None = None) -> list[Block]:
    """`explained`: the seeds whose detectors were explained, where fewer than the trained ones."""
    text = (f"Pooled test AUC per dataset × detector (machine 'all'); detectors below AUC {min_auc} are flagged "
            f"beside their explanation scores.")
    if explained is not None:
        text += (f" The explainers ran on the detectors of seed(s) {', '.join(map(str, explained))} only: the flag "
                 f"(and `detector_auc` beside every explanation score) is the AUC over those seeds; the other "
                 f"columns, and the detector claims, are over every trained seed.")
    blocks = [Block("h2", "Detectors"), Block("p", text)]
    if detectors.empty or "machine" not in detectors.columns:
        return blocks + [Block("p", "No detection scores in this run.")]
    pooled = detectors[detectors["machine"].astype(str) == "all"].sort_values(["dataset", "detector"])
    wanted = [c for c in ("n_seeds", "auc", "auc_std", "pauc", "official_score", "epochs")
              if c in pooled.columns]
    header = ["dataset", "detector", *wanted, "flag"]

    def flag(r) -> str:
        text = auc_flag(aucs.get((r["dataset"], r["detector"])), min_auc)
        return text + ("; TIME-CAPPED training (machine-dependent)" if bool(r.get("capped", False)) else "")

    rows = [[r["dataset"], r["detector"], *[fmt(r[c]) for c in wanted], flag(r)] for _, r in pooled.iterrows()]
    return blocks + [Block("table", table=Table(header, rows))]


def training_blocks(training: pd.DataFrame, pics: list[Path], rel) -> list[Block]:
    if training.empty:
        return []
    runs = training.drop_duplicates(["dataset", "kind", "detector", "explainer", "seed"])
    reasons = runs.groupby(["kind", "stop_reason"]).size()
    words = {"plateau": "on a plateau", "epochs": "at the epoch cap", "time": "at the time cap"}
    said = "; ".join(f"{kind}s " + ", ".join(f"{n} {words.get(reason, 'for an unrecorded reason')}"
                                             for (k, reason), n in reasons.items() if k == kind)
                     for kind in ("detector", "interpreter") if kind in set(runs["kind"]))
    return [Block("h3", "Training"),
            Block("p", "Validation loss per epoch of every detector and trained interpreter (training.csv), divided "
                       "by its first epoch's. Stop reasons — plateau: no relative gain of `min_improvement` within "
                       f"`patience` epochs; epochs: the budget's cap; time: the time cap. This run stopped {said}."),
            *[Block("img", "learning curves", src=rel(p)) for p in pics]]


def cost_blocks(records: list[dict]) -> list[Block]:
    rows = [{"explainer": r["explainer"], **r["cost"]} for r in records
            if r.get("cell") == "evaluate" and "cost" in r and r["cost"].get("n_clips")]
    if not rows:
        return []
    df = pd.DataFrame(rows)
    df["explain_s_per_clip"] = df["explain_s"] / df["n_clips"]
    wanted = [c for c in ("explain_s_per_clip", "explainer_forward", "explainer_backward", "peak_memory_mb")
              if c in df.columns]
    agg = df.groupby("explainer", sort=True)[wanted].mean()
    table = Table(["explainer", *wanted], [[ex, *[fmt(v) for v in r]] for ex, r in agg.iterrows()])
    return [Block("h2", "Cost"), Block("p", "Mean over cells of seconds and detector passes per explained clip "
                                            "(wall-clock values vary between machines; cost.csv has every cell)."),
            Block("table", table=table)]


def status_blocks(records: list[dict]) -> list[Block]:
    bad = sorted(f"{r.get('label', '?')} — {r['status']}: {r.get('reason', '')}" for r in records
                 if r.get("status") != "done")
    if not bad:
        return []
    return [Block("h2", "Cells not done"), Block("list", items=bad)]


@dataclass
class Figures:
    curves: list[Path]
    bars: dict[str, list[Path]]
    agreement: Path | None
    galleries: list[Path]


def picture_blocks(pics: Figures, rel) -> list[Block]:
    blocks = []
    if pics.curves:
        blocks += [Block("h2", "Faithfulness and temporal overlap versus percentile")]
        blocks += [Block("img", "percentile curves", src=rel(p)) for p in pics.curves]
    if pics.agreement is not None:
        blocks += [Block("h2", "Do the metrics agree?"),
                   Block("p", "Kendall τ between the explainer rankings of each pair of headline metrics, "
                              "averaged over dataset × detector (agreement.csv)."),
                   Block("img", "metric agreement", src=rel(pics.agreement))]
    blocks += gallery_blocks(pics.galleries, rel)
    return blocks
