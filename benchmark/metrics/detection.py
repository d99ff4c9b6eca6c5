"""Detection metrics: AUC, pAUC and the DCASE task 2 scores per machine, section and domain.

DCASE rules (2022+, REFERENCE B): within a section, AUC(source) ranks the source-domain normals
against *all* anomalies of the section, AUC(target) the target-domain normals against all anomalies;
pAUC = `roc_auc_score(max_fpr=0.1)` (McClish-standardised, chance 0.5) over all clips of the section;
the official score is the harmonic mean of every AUC(source), AUC(target) and pAUC of every machine
and section. A term that cannot be computed (a section without target clips, a single class) is NaN
and left out of the harmonic mean; the official score is NaN only when no term is defined.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

MAX_FPR = 0.1
ALL = "all"
KEY_COLUMNS = ["dataset", "detector", "machine", "section"]
TABLE_COLUMNS = KEY_COLUMNS + ["n_seeds", "n_normal", "n_anomalous", "auc", "auc_std", "auc_source",
                               "auc_target", "pauc", "official_score"]
SCORE_COLUMNS = ["dataset", "machine", "section", "domain", "clip_id", "label", "detector", "detector_seed", "value"]
VALUE_COLUMNS = ["auc", "auc_source", "auc_target", "pauc", "official_score"]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of anomaly scores (label 1 = anomalous); NaN unless both classes are present."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    from sklearn.metrics import roc_auc_score  # ~1 s at import: only when a table is computed
    return float(roc_auc_score(labels, scores))


def pauc(labels: np.ndarray, scores: np.ndarray, max_fpr: float = MAX_FPR) -> float:
    """McClish-standardised partial AUC over false-positive rates up to `max_fpr` (chance 0.5)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(labels, scores, max_fpr=max_fpr))


def harmonic_mean(values: Iterable[float]) -> float:
    """Harmonic mean of the finite values (0 if any is 0); NaN when none is finite."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan")
    if (v <= 0).any():
        return 0.0
    return float(len(v) / (1.0 / v).sum())


def domain_auc(labels: np.ndarray, scores: np.ndarray, domains: np.ndarray, domain: str) -> float:
    """AUC of the normals of `domain` against all anomalies (the DCASE per-domain rule)."""
    keep = (np.asarray(labels) == 1) | (np.char.lower(np.asarray(domains, dtype=str)) == domain)
    return auc(np.asarray(labels)[keep], np.asarray(scores)[keep])


def section_scores(labels: np.ndarray, scores: np.ndarray, domains: np.ndarray) -> dict[str, float]:
    """auc (all clips), auc_source, auc_target, pauc (all clips) of one section's labelled clips."""
    return {"auc": auc(labels, scores),
            "auc_source": domain_auc(labels, scores, domains, "source"),
            "auc_target": domain_auc(labels, scores, domains, "target"),
            "pauc": pauc(labels, scores)}


def official_score(sections: Iterable[dict[str, float]]) -> float:
    """Harmonic mean over every section's AUC(source), AUC(target) and pAUC."""
    return harmonic_mean(v for s in sections for v in (s["auc_source"], s["auc_target"], s["pauc"]))


def _seed_rows(clips: pd.DataFrame) -> list[dict]:
    """Per-section rows and the pooled 'all' row of one (dataset, detector, seed)."""
    rows, per_section = [], []
    for (machine, section), part in clips.groupby(["machine", "section"], sort=True):
        s = section_scores(part["label"].to_numpy(), part["value"].to_numpy(), part["domain"].to_numpy())
        per_section.append(s)
        rows.append({"machine": machine, "section": section, **s, "official_score": official_score([s])})
    pooled = section_scores(clips["label"].to_numpy(), clips["value"].to_numpy(), clips["domain"].to_numpy())
    rows.append({"machine": ALL, "section": ALL, **pooled, "official_score": official_score(per_section)})
    return rows


def detection_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Detection results of per-clip anomaly scores.

    `scores`: columns `dataset, machine, section, domain, clip_id, label, detector, detector_seed, value`
    (value = anomaly score; label 0 normal, 1 anomalous, -1 unknown and excluded; extra columns ignored).
    Returns one row per (dataset, detector, machine, section), then one row per (dataset, detector) with
    machine = section = "all" (pooled AUCs over every clip, the official score over every section):
    `dataset, detector, machine, section, n_seeds, n_normal, n_anomalous, auc, auc_std, auc_source,
    auc_target, pauc, official_score` — each value computed per seed, then averaged over seeds;
    `auc_std` is the standard deviation over seeds (NaN with one seed).
    """
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"detection scores lack column(s) {', '.join(missing)}: give per-clip rows with "
                         f"{', '.join(SCORE_COLUMNS)}")
    clips = scores[SCORE_COLUMNS].copy()
    clips["label"] = pd.to_numeric(clips["label"], errors="coerce")
    clips = clips[clips["label"].isin([0, 1])]
    for column in ("dataset", "detector", "machine", "section", "domain", "clip_id"):
        clips[column] = clips[column].fillna("").astype(str)
    clips["label"] = clips["label"].astype(int)
    clips["value"] = clips["value"].astype(float)
    # one score per clip and seed, whatever else the rows carried
    clips = clips.drop_duplicates(["dataset", "detector", "detector_seed", "machine", "section", "clip_id"])

    per_seed = []
    for (dataset, detector, seed), part in clips.groupby(["dataset", "detector", "detector_seed"], sort=True):
        for row in _seed_rows(part):
            per_seed.append({"dataset": dataset, "detector": detector, "detector_seed": seed, **row})
    if not per_seed:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    per_seed = pd.DataFrame(per_seed)

    counts = _clip_counts(clips)
    out = []
    for key, part in per_seed.groupby(KEY_COLUMNS, sort=False):
        row = dict(zip(KEY_COLUMNS, key, strict=True))
        row["n_seeds"] = part["detector_seed"].nunique()
        row["n_normal"], row["n_anomalous"] = counts[key]
        row.update({c: float(part[c].mean()) for c in VALUE_COLUMNS})
        row["auc_std"] = float(part["auc"].std(ddof=1)) if len(part) > 1 else float("nan")
        out.append(row)
    table = pd.DataFrame(out)
    # sections sorted by name within each dataset and detector, the pooled row last
    table["_pooled"] = table["machine"].eq(ALL) & table["section"].eq(ALL)
    table = table.sort_values(["dataset", "detector", "_pooled", "machine", "section"], kind="stable")
    return table[TABLE_COLUMNS].reset_index(drop=True)


def _clip_counts(clips: pd.DataFrame) -> dict[tuple[str, str, str, str], tuple[int, int]]:
    """(n_normal, n_anomalous) distinct clips per section and per (dataset, detector) pooled."""
    distinct = clips.drop_duplicates(["dataset", "detector", "machine", "section", "clip_id"])
    counts = {}
    for (dataset, detector), part in distinct.groupby(["dataset", "detector"], sort=False):
        for (machine, section), sec in part.groupby(["machine", "section"], sort=False):
            counts[(dataset, detector, machine, section)] = (int((sec["label"] == 0).sum()),
                                                             int((sec["label"] == 1).sum()))
        counts[(dataset, detector, ALL, ALL)] = (int((part["label"] == 0).sum()), int((part["label"] == 1).sum()))
    return counts
