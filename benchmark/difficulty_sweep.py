"""The difficulty sweep's table and figure, from a published suite's detector results.

A suite's `difficulty_sweep` (see `benchmark/variants.py`) trains and scores its detectors on the synthetic data
generated again at each difficulty (0 = obvious anomalies, 1 = the faintest the generator renders: each anomaly
still dominates at least one time-frequency bin, so a detector that finds that bin stays above chance).
`difficulty_table` — `difficulty_sweep.csv`: the pooled test AUC and pAUC of every detector at every
difficulty, beside its AUC on the suite's own dataset (the recipe's default difficulty); `difficulty_figure` plots
AUC against difficulty, chance dotted. None when the suite swept nothing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .figures import _figure, _save, safe_name
from .variants import parse_label

COLUMNS = ["dataset", "detector", "difficulty", "auc", "pauc", "default_auc", "n_seeds", "n_normal", "n_anomalous"]


def difficulty_table(detectors: pd.DataFrame) -> pd.DataFrame | None:
    """`difficulty_sweep.csv` (module doc): pooled rows (`machine = section = all`) only."""
    if detectors.empty or "dataset" not in detectors.columns:
        return None
    pooled = detectors[detectors["machine"].astype(str) == "all"]
    parts = pd.DataFrame([parse_label(str(d)) for d in pooled["dataset"]], index=pooled.index)
    d = pd.concat([pooled, parts], axis=1)
    swept = d[d["difficulty"].notna()]
    if swept.empty:
        return None
    plain = d[d["difficulty"].isna() & (d["filter"] == "") & (d["features"] == "mel")]
    default = {(r.dataset, r.detector): float(r.auc) for r in plain.itertuples()}
    out = pd.DataFrame({"dataset": swept["base"], "detector": swept["detector"], "difficulty": swept["difficulty"],
                        "auc": swept["auc"], "pauc": swept.get("pauc"),
                        "default_auc": [default.get((b, det), float("nan"))
                                        for b, det in zip(swept["base"], swept["detector"], strict=True)],
                        "n_seeds": swept.get("n_seeds"), "n_normal": swept.get("n_normal"),
                        "n_anomalous": swept.get("n_anomalous")}, columns=COLUMNS)
    return out.sort_values(["dataset", "detector", "difficulty"], kind="stable").reset_index(drop=True)


def difficulty_figure(table: pd.DataFrame, folder: Path) -> list[Path]:
    """Per dataset: pooled AUC versus difficulty, a line per detector, chance (0.5) dotted."""
    paths = []
    for dataset, part in table.groupby("dataset", sort=True):
        fig = _figure(1, 1, width=4.2, height=2.8)
        ax = fig.subplots()
        for i, (det, line) in enumerate(part.groupby("detector", sort=True)):
            line = line.sort_values("difficulty")
            ax.plot(line["difficulty"], line["auc"], "-o", markersize=3, color=f"C{i}", label=det)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(0.3, 1.02)
        ax.set_xlabel("difficulty (0 obvious … 1 chance)", fontsize=8)
        ax.set_ylabel("pooled test AUC", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="lower left")
        ax.set_title(f"{dataset}: detection vs difficulty (dotted: chance)", fontsize=9)
        paths.append(_save(fig, folder / f"difficulty-{safe_name(dataset)}.png"))
    return paths
