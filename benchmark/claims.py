"""The source papers' headline claims, checked on a leaderboard's own per-clip values: `claims.csv`.

One row per claim and dataset (and detector where the claim is about explainers of one detector): the
paper's number, ours (the two means compared, with the mean paired difference and its 95 % bootstrap CI),
n, the test and a verdict:

- "reproduced": the one-sided paired Wilcoxon test in the claim's direction gives p < alpha;
- "contradicted": the test in the opposite direction does;
- "not resolved at this n": neither; the reason says when even unanimous pairs could not reach alpha
  (one-sided exact p = 2^-n);
- "not testable here": the suite lacks what the claim needs (the detector, explainer or metric), said why.

Explainer claims pair per (clip, detector seed); detector claims (AUC) pair per seed, from the test
scores each train cell recorded, so one seed can never resolve them. `score_correlation` gives the AE-MAE
Spearman correlation of test scores per dataset, the check that the two detectors differ at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .statistics import ClipValues, paired_test

GRADIENT_FAMILY = ("error_map", "saliency", "integrated_gradients", "smoothgrad", "gradient_shap", "grad_cam")
PLANER_PAPER = "Faithful explanations for acoustic anomaly detection (planer)"
LMAC_PAPER = "L-MAC-TD (time-domain explanations)"
ENCODEC_PAPER = "Audio explanation synthesis with EnCodec"


@dataclass(frozen=True)
class Comparison:
    """`a` against `b` in the claim's direction (a better): per-clip or per-seed values, paired on the index."""
    a: pd.Series | None
    b: pd.Series | None
    label_a: str
    label_b: str
    missing: str = ""  # why the comparison cannot be made, if it cannot


def _verdict(c: Comparison, alpha: float) -> dict:
    if c.missing or c.a is None or c.b is None:
        return {"ours": "", "difference": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "p": np.nan,
                "verdict": "not testable here", "reason": c.missing or "no values"}
    shared = c.a.index.intersection(c.b.index)
    a, b = c.a.loc[shared].astype(float), c.b.loc[shared].astype(float)
    n, p_better = paired_test(a, b, "greater")
    _, p_worse = paired_test(a, b, "less")
    if n == 0:
        return {"ours": "", "difference": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "p": np.nan,
                "verdict": "not testable here", "reason": "the two sides share no clip or seed"}
    from .leaderboard import bootstrap_ci
    d = (a - b).to_numpy()
    # a clip's pairs under several seeds are resampled together, as the paired test averages them
    clips = shared.get_level_values("clip_id").to_numpy() \
        if isinstance(shared, pd.MultiIndex) and "clip_id" in shared.names else None
    low, high = bootstrap_ci(d, clusters=clips) if n > 1 else (np.nan, np.nan)
    row = {"ours": f"{c.label_a} {a.mean():.3f} vs {c.label_b} {b.mean():.3f}", "difference": float(d.mean()),
           "ci_low": low, "ci_high": high, "n": n, "p": p_better}
    if p_better < alpha:
        return {**row, "verdict": "reproduced", "reason": ""}
    if p_worse < alpha:
        return {**row, "p": p_worse, "verdict": "contradicted", "reason": f"the opposite holds (p = {p_worse:.3g})"}
    reason = (f"even {n} unanimous pairs give p = {0.5 ** n:.3g} >= {alpha}" if 0.5 ** n >= alpha
              else f"p = {p_better:.3g} at n = {n}")
    return {**row, "verdict": "not resolved at this n", "reason": reason}


def _seed_aucs(rows: pd.DataFrame, dataset: str, detector: str) -> pd.Series | None:
    """Test AUC per detector seed from the recorded anomaly scores (labelled clips)."""
    from sklearn.metrics import roc_auc_score
    s = rows[(rows.metric == "anomaly_score") & (rows.dataset == dataset) & (rows.detector == detector)
             & rows.label.isin([0, 1])]
    if s.empty:
        return None
    out = {seed: roc_auc_score(g.label, g.value) for seed, g in s.groupby("detector_seed") if g.label.nunique() == 2}
    return pd.Series(out, dtype=float) if out else None


def score_correlation(rows: pd.DataFrame, a: str = "ae", b: str = "mae") -> pd.DataFrame:
    """Spearman correlation of two detectors' test scores per dataset (pairs: clip x seed)."""
    from scipy.stats import spearmanr
    s = rows[rows.metric == "anomaly_score"]
    out = []
    for dataset, g in s.groupby("dataset", sort=True):
        wide = g.pivot_table(index=["clip_id", "detector_seed"], columns="detector", values="value", aggfunc="first")
        if {a, b} <= set(wide.columns):
            pair = wide[[a, b]].dropna()
            if len(pair) > 2:
                out.append({"dataset": dataset, "detectors": f"{a} vs {b}", "n": len(pair),
                            "spearman": float(spearmanr(pair[a], pair[b]).statistic)})
    return pd.DataFrame(out, columns=["dataset", "detectors", "n", "spearman"])


def claims_table(leaderboard: pd.DataFrame, rows: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Every claim below on every dataset of the leaderboard (see the module docstring)."""
    values = ClipValues(rows[rows.metric != "anomaly_score"])
    out: list[dict] = []

    def clips(dataset: str, detector: str, explainer: str, metric: str, param: str) -> pd.Series | None:
        return values.of((dataset, detector, metric), explainer, param)

    def present(dataset: str, detector: str, explainer: str | None = None) -> str:
        """Why the board lacks `detector` (or `explainer` on it) for `dataset`; empty when both ran."""
        g = leaderboard[leaderboard.dataset == dataset]
        if detector not in set(g.detector):
            return f"detector {detector} is not in this suite"
        if explainer is not None and explainer not in set(g[g.detector == detector].explainer):
            return f"explainer {explainer} did not run on {detector} in this suite"
        return ""

    def add(claim: str, source: str, paper: str, dataset: str, detector: str, test: str, c: Comparison) -> None:
        out.append({"claim": claim, "source": source, "paper": paper, "dataset": dataset, "detector": detector,
                    "test": test, **_verdict(c, alpha)})

    def metric_pair(dataset: str, det_a: str, det_b: str, ex: str, metric: str, param: str) -> Comparison:
        missing = present(dataset, det_a, ex) or present(dataset, det_b, ex)
        if missing:
            return Comparison(None, None, det_a, det_b, missing)
        a, b = clips(dataset, det_a, ex, metric, param), clips(dataset, det_b, ex, metric, param)
        why = "" if a is not None and b is not None else f"no {metric}[{param}] values"
        return Comparison(a, b, det_a, det_b, why)

    def versus_family(dataset: str, det: str, metric: str, param: str, best: bool) -> Comparison:
        """error_map against the best other (best=True), or the worst other against grad_cam (best=False)."""
        target = "error_map" if best else "grad_cam"
        missing = present(dataset, det, target)
        if missing:
            return Comparison(None, None, target, "others", missing)
        series = {ex: clips(dataset, det, ex, metric, param) for ex in GRADIENT_FAMILY}
        series = {ex: s for ex, s in series.items() if s is not None and len(s)}
        others = {ex: s for ex, s in series.items() if ex != target}
        if target not in series or not others:
            return Comparison(None, None, target, "others", f"no {metric}[{param}] of {target} and another method")
        if best:  # error_map must beat even the strongest other method
            rival = max(others, key=lambda ex: others[ex].mean())
            return Comparison(series[target], others[rival], target, rival)
        rival = min(others, key=lambda ex: others[ex].mean())  # grad_cam below even the weakest other
        return Comparison(others[rival], series[target], rival, target)

    def saturation(dataset: str, det: str) -> str:
        """Why EnCodec's sweeps on `det` say nothing (a saturated sweep, `sweep_saturated`), or empty."""
        from .metrics.synthesis import sweep_saturated
        for sweep in ("agreement", "agreement_random"):
            ends = {q: clips(dataset, det, "encodec_latent", sweep, q) for q in ("100", "0")}
            if all(v is not None and len(v) for v in ends.values()):
                reason = sweep_saturated({q: float(v.mean()) for q, v in ends.items()})
                if reason:
                    return f"{sweep}: {reason}"
        return ""

    for dataset in sorted(set(leaderboard.dataset)):
        add("MAE error-map chunk F1 above AE at p98", PLANER_PAPER, "0.60 vs 0.55 (max over p)", dataset, "mae vs ae",
            "one-sided paired Wilcoxon over clips", metric_pair(dataset, "mae", "ae", "error_map", "chunk_f1", "98"))
        add("MAE error-map FF above AE (frame FF, p = 90)", PLANER_PAPER, "0.175 vs 0.141", dataset, "mae vs ae",
            "one-sided paired Wilcoxon over clips", metric_pair(dataset, "mae", "ae", "error_map", "ff", "90"))
        for det, paper_best, paper_worst in (
                ("ae", "error 0.141 vs GradSHAP 0.098", "Grad-CAM 0.083 vs SmoothGrad 0.094"),
                ("mae", "error 0.175 vs saliency 0.137", "Grad-CAM 0.112 vs GradSHAP 0.122")):
            add("the error map is the most faithful of the six gradient/map methods (FF p = 90)", PLANER_PAPER,
                paper_best, dataset, det, "one-sided paired Wilcoxon, error map vs the best other method",
                versus_family(dataset, det, "ff", "90", best=True))
            add("Grad-CAM is the least faithful of the six (FF p = 90)", PLANER_PAPER, paper_worst, dataset, det,
                "one-sided paired Wilcoxon, the weakest other method vs Grad-CAM",
                versus_family(dataset, det, "ff", "90", best=False))
        missing = present(dataset, "ae") or present(dataset, "mae")
        a, b = (None, None) if missing else (_seed_aucs(rows, dataset, "ae"), _seed_aucs(rows, dataset, "mae"))
        add("AE detection AUC at least MAE's", PLANER_PAPER, "0.916 vs 0.830 (real planer)", dataset, "ae vs mae",
            "one-sided paired Wilcoxon over detector seeds (test AUC)",
            Comparison(a, b, "ae", "mae", missing or ("" if a is not None and b is not None else "no test scores")))
        for det in sorted(set(leaderboard[leaderboard.dataset == dataset].detector)):
            if present(dataset, det, "lmac_td") and present(dataset, det, "lmac"):
                continue  # neither interpreter on this detector: no row
            missing = present(dataset, det, "lmac_td") or present(dataset, det, "lmac")
            comp = Comparison(None, None, "lmac_td", "lmac", missing) if missing else Comparison(
                clips(dataset, det, "lmac_td", "si_sdr", ""), clips(dataset, det, "lmac", "si_sdr", ""),
                "lmac_td", "lmac")
            add("L-MAC-TD audio closer to the true anomaly than L-MAC (SI-SDR to the anomaly, dB)", LMAC_PAPER,
                "better audio quality at comparable faithfulness (user study)", dataset, det,
                "one-sided paired Wilcoxon over clips; faithfulness compared in lmac.csv", comp)
            levels = [(what, clips(dataset, det, "lmac", "si_sdr", param)) for what, param in
                      (("the clip itself", "input"), ("the ideal mask", "oracle"))]
            levels = [f"{what} {v.mean():.1f} dB" for what, v in levels if v is not None and len(v)]
            if levels:  # the reference levels on L-MAC's clips, to read both interpreters against
                row = out[-1]
                row["reason"] = "; ".join(filter(None, [row["reason"], "references: " + ", ".join(levels)]))
        for det in sorted(set(leaderboard[(leaderboard.dataset == dataset)
                                          & (leaderboard.explainer == "encodec_latent")].detector)):
            saturated = saturation(dataset, det)
            for metric, paper in (("agreement", "up to 97.1 % agreement"), ("drop", "up to 85 % accuracy drop")):
                a = clips(dataset, det, "encodec_latent", metric, "21")
                b = clips(dataset, det, "encodec_latent", f"{metric}_random", "21")
                why = saturated or ("" if a is not None and b is not None
                                    else f"no {metric}[21] / {metric}_random[21] values")
                add(f"EnCodec latent explanations: {metric} above random latent selection (21 % kept)",
                    ENCODEC_PAPER, paper, dataset, det, "one-sided paired Wilcoxon over clips",
                    Comparison(a, b, "encodec_latent", "random", why))
    return pd.DataFrame(out, columns=["claim", "source", "paper", "dataset", "detector", "test", "ours", "difference",
                                      "ci_low", "ci_high", "n", "p", "verdict", "reason"])
