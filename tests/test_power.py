"""power.csv (benchmark/power.py): what a board can resolve at its n, from its own per-clip spread."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from benchmark.power import power_summary, power_table


def board(n_clips: int, n_explainers: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Explainer e scores 0.1·e plus noise per clip; the leaderboard ranks them by that mean."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.5, 0.2, n_clips)
    rows, lb = [], []
    for e in range(n_explainers):
        values = base + 0.1 * e + rng.normal(0, 0.05, n_clips)
        rows += [{"dataset": "d", "detector": "a", "explainer": f"x{e}", "metric": "m", "param": "",
                  "clip_id": f"c{i}", "detector_seed": 0, "value": v} for i, v in enumerate(values)]
        lb.append({"dataset": "d", "detector": "a", "explainer": f"x{e}", "m.mean": values.mean(),
                   "m.rank": n_explainers - e})
    return pd.DataFrame(lb), pd.DataFrame(rows)


def test_power_numbers_follow_from_the_paired_spread():
    lb, rows = board(30, 4)
    table = power_table(lb, rows, ["m"])
    (row,) = table.to_dict("records")
    wide = rows.pivot(index="clip_id", columns="explainer", values="value")
    sds = [np.std(wide[f"x{e + 1}"] - wide[f"x{e}"], ddof=1) for e in range(3)]
    assert row["n_clips"] == 30 and row["n_explainers"] == 4
    assert row["sd_diff"] == pytest.approx(float(np.median(sds)))
    z = norm.ppf(1 - 0.05 / 3 / 2) + norm.ppf(0.8)
    assert row["holm_threshold"] == pytest.approx(0.05 / 3)
    assert row["mde"] == pytest.approx(z * row["sd_diff"] / math.sqrt(30))
    means = lb.set_index("explainer")["m.mean"]
    assert row["top_gap"] == pytest.approx(means["x3"] - means["x2"])
    assert row["clips_for_top_gap"] == max(7, math.ceil((z * row["sd_diff"] / row["top_gap"]) ** 2))  # 2/2^7 < 0.05/3
    assert row["resolvable"] and row["min_p"] == pytest.approx(2 / 2**30)


def test_eight_clips_and_nine_explainers_cannot_resolve_anything():
    lb, rows = board(8, 9)
    (row,) = power_table(lb, rows, ["m"]).to_dict("records")
    assert row["min_p"] == pytest.approx(2 / 256) and row["holm_threshold"] == pytest.approx(0.05 / 8)
    assert not row["resolvable"]
    lb, rows = board(8, 6)
    assert power_table(lb, rows, ["m"])["resolvable"].item()  # 2/256 < 0.05/5
    assert "1 rankings" in power_summary(power_table(*board(8, 9), ["m"])) and "1 cannot separate" in power_summary(
        power_table(*board(8, 9), ["m"]))


def test_more_clips_shrink_the_detectable_difference():
    small = power_table(*board(10, 3, seed=1), ["m"])["mde"].item()
    large = power_table(*board(160, 3, seed=1), ["m"])["mde"].item()
    assert large < small / 2.5  # ~ 1/sqrt(16) = 1/4, with sampling noise in the spread


def test_the_exact_floor_is_the_first_n_the_wilcoxon_can_resolve():
    from benchmark.power import exact_floor
    for threshold in (0.05, 0.05 / 3, 0.05 / 8, 0.001):
        n = exact_floor(threshold)
        assert 2 / 2**n < threshold <= 2 / 2 ** (n - 1)
