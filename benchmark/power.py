"""What a board can resolve at its n: `power.csv`, from the board's own per-clip variance.

For every dataset × detector × headline column, the neighbour pairs of its ranking (as `neighbours.csv` tests
them) give paired per-clip differences. From their spread `sd` (the median over pairs) and the pairs' clip
count `n`:

* `min_p`: the smallest two-sided p the exact Wilcoxon signed-rank test can give at n, 2 / 2^n, against the
  first Holm threshold α / (k − 1) for k ranked explainers: `resolvable` is False when no difference however
  large could be declared (n = 8 with 9 or more explainers);
* `mde`: the difference the paired test detects with 80 % power at that threshold (normal approximation,
  (z₁₋ₐ/₂ + z₀.₈) · sd / √n);
* `top_gap`, `clips_for_top_gap`: the leader's mean minus the runner-up's, and the n at which a gap that
  size would reach that power (at least the n at which the exact test can reach the threshold at all):
  a scale-free answer to "how many clips would this ranking need".

These are planning numbers, not tests: they say which rankings a bigger suite would be needed for.
"""
from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy.stats import norm

from .statistics import ALPHA, paired_values, rankings

POWER = 0.8
COLUMNS = ["dataset", "detector", "metric", "n_explainers", "n_clips", "sd_diff", "min_p", "holm_threshold",
           "resolvable", "mde", "top_gap", "clips_for_top_gap"]


def power_table(leaderboard: pd.DataFrame, rows: pd.DataFrame, columns: list[str], alpha: float = ALPHA,
                power: float = POWER) -> pd.DataFrame:
    """`power.csv` (module doc): one row per dataset × detector × column with at least two ranked explainers."""
    z_power = float(norm.ppf(power))
    out = []
    for dataset, detector, column, group, order, values in rankings(leaderboard, rows, columns):
        if len(order) < 2:
            continue
        sds, ns = [], []
        for better, worse in pairwise(order):
            x, y = paired_values(values[better], values[worse])
            if len(x) >= 2:
                sds.append(float(np.std(x - y, ddof=1)))
                ns.append(len(x))
        if not ns:
            continue
        n, sd = int(np.median(ns)), float(np.median(sds))
        means = group.set_index("explainer")[f"{column}.mean"].astype(float)
        gap = abs(float(means[order[0]] - means[order[1]]))
        threshold = alpha / (len(order) - 1)
        z = float(norm.ppf(1 - threshold / 2)) + z_power
        out.append({"dataset": dataset, "detector": detector, "metric": column, "n_explainers": len(order),
                    "n_clips": n, "sd_diff": sd, "min_p": min(1.0, 2.0 / 2.0**n), "holm_threshold": threshold,
                    "resolvable": bool(2.0 / 2.0**n < threshold), "mde": z * sd / math.sqrt(n),
                    "top_gap": gap, "clips_for_top_gap": _clips_for(gap, sd, z, threshold)})
    return pd.DataFrame(out, columns=COLUMNS)


def _clips_for(gap: float, sd: float, z: float, threshold: float) -> float:
    """Pairs at which a mean paired difference `gap` reaches the power; NaN for a tie (no gap to resolve)."""
    if gap <= 0:
        return float("nan") if sd > 0 else float(exact_floor(threshold))
    return float(max(exact_floor(threshold), math.ceil((z * sd / gap) ** 2)))


def exact_floor(threshold: float) -> int:
    """The fewest pairs at which the exact two-sided Wilcoxon can reach p < threshold (2 / 2^n < threshold)."""
    return int(math.floor(math.log2(2.0 / threshold))) + 1


def power_summary(table: pd.DataFrame) -> str:
    """One sentence for the page: how many rankings the board can resolve at its n, and what it would take."""
    if table.empty:
        return "No ranking with two or more explainers to size."
    unresolvable = int((~table["resolvable"].astype(bool)).sum())
    need = table["clips_for_top_gap"].median()
    n = int(table["n_clips"].median())
    return (f"Of {len(table)} rankings (dataset × detector × headline column), {unresolvable} cannot separate any "
            f"pair at their n (the exact Wilcoxon's smallest p, 2/2^n, is above the first Holm threshold). "
            f"Separating each ranking's leader from its runner-up at the gap observed here, with 80 % power, "
            f"would take a median of {need:.0f} clips per ranking (this board has {n}); power.csv has every "
            f"ranking with the difference it can detect.")
