"""Statistics of the rankings: Wilcoxon p-values against an exact enumeration, Holm, Borda and Kendall τ
on hand-made tables, neighbour tests on a small leaderboard."""
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm, rankdata

from benchmark.leaderboard import leaderboard_table
from benchmark.statistics import (
    MetricMeta,
    borda,
    control_tests,
    family_ranks,
    headline_columns,
    holm,
    kendall_tau_matrix,
    metric_agreement,
    neighbour_tests,
    paired_wilcoxon,
    ranking_chain,
    split_column,
)
from benchmark.store import rows_frame


def exact_signed_rank_p(d: np.ndarray) -> float:
    """Two-sided p of the signed-rank statistic by enumerating all 2^n sign flips (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = abs(ranks[d > 0].sum() - ranks[d < 0].sum())
    extreme = sum(abs(sum(r if s else -r for r, s in zip(ranks, signs, strict=True))) >= observed
                  for signs in itertools.product([True, False], repeat=len(d)))
    return extreme / 2 ** len(d)


def test_wilcoxon_all_positive_differences_has_p_two_over_two_to_the_n():
    a = np.arange(1.0, 9.0)
    assert paired_wilcoxon(a, np.zeros(8)) == pytest.approx(2 / 2 ** 8)


def test_wilcoxon_matches_exact_enumeration_on_mixed_signs():
    d = np.array([1, 2, -3, 4, 5, -6, 7, 8, 9, 10, 11, 12], dtype=float)
    base = np.linspace(0.1, 0.9, 12)
    p = paired_wilcoxon(base + d, base)
    assert p == pytest.approx(exact_signed_rank_p(d))
    assert p == pytest.approx(0.01611328125)


def test_wilcoxon_with_ties_and_zeros_uses_the_tie_corrected_normal_approximation():
    d = np.array([0, 0, 1, 1, 1, 2, 2, -2, 3, 4, 4, -5, 6, 6, 6, 7], dtype=float)
    nz = d[d != 0]
    n = len(nz)
    ranks = rankdata(np.abs(nz))
    w_plus = ranks[nz > 0].sum()
    _, counts = np.unique(np.abs(nz), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - (counts ** 3 - counts).sum() / 48
    expected = 2 * norm.sf(abs(w_plus - n * (n + 1) / 4) / np.sqrt(var))
    assert paired_wilcoxon(d, np.zeros_like(d)) == pytest.approx(expected, rel=1e-9)


def test_wilcoxon_degenerate_cases():
    assert paired_wilcoxon(np.ones(4), np.ones(4)) == 1.0
    assert np.isnan(paired_wilcoxon(np.zeros(0), np.zeros(0)))


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, 1*0.04 -> running max 0.03, 0.06, 0.06
    assert holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    out = holm(np.array([0.2, np.nan, 0.9]))
    assert out[0] == pytest.approx(0.4) and np.isnan(out[1]) and out[2] == pytest.approx(0.9)


def test_borda_and_mean_rank_on_a_hand_made_table():
    ranks = pd.DataFrame({"m1": [1, 2, 3], "m2": [2, 1, 3], "m3": [1, np.nan, 2]}, index=["a", "b", "c"])
    out = borda(ranks)
    # m1, m2 rank 3 items (k=3): a 2+1, b 1+2, c 0+0; m3 ranks 2 items (k=2): a 1, c 0
    assert out["borda"].tolist() == [4.0, 3.0, 0.0]
    assert out["mean_rank"].tolist() == pytest.approx([4 / 3, 1.5, 8 / 3])
    assert out["n_metrics"].tolist() == [3, 2, 3]
    assert out["borda_rank"].tolist() == [1, 2, 3]


def test_kendall_tau_matrix_on_a_hand_made_case():
    ranks = pd.DataFrame({"same": [1, 2, 3, 4], "twin": [1, 2, 3, 4], "reverse": [4, 3, 2, 1],
                          "swap": [2, 1, 3, 4], "flat": [1, 1, 1, 1]})
    tau = kendall_tau_matrix(ranks)
    assert tau.loc["same", "twin"] == pytest.approx(1.0)
    assert tau.loc["same", "reverse"] == pytest.approx(-1.0)
    assert tau.loc["same", "swap"] == pytest.approx(4 / 6)  # one discordant pair of six
    assert tau.loc["swap", "same"] == tau.loc["same", "swap"]
    assert np.isnan(tau.loc["same", "flat"])


def _rows(values: dict[tuple[str, str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (explainer, metric, param), vals in values.items():
        for i, v in enumerate(vals):
            rows.append({"dataset": "d", "machine": "m", "section": "00", "domain": "source", "clip_id": f"c{i:02d}",
                         "label": 1, "detector": "det", "detector_seed": 0, "explainer": explainer,
                         "metric": metric, "param": param, "value": v, "chance": float("nan")})
    return rows_frame(rows)


def test_neighbour_tests_separate_a_clear_gap_and_not_a_tie():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, size=(3, 12))
    rows = _rows({("strong", "unit-score", ""): list(0.9 + noise[0]),
                  ("weak_a", "unit-score", ""): list(0.2 + noise[1]),
                  ("weak_b", "unit-score", ""): list(0.2 + noise[2])})
    lb = leaderboard_table(rows, [])
    tests = neighbour_tests(lb, rows, ["unit-score"])
    assert tests["position"].tolist() == [1, 2]
    first, second = tests.iloc[0], tests.iloc[1]
    assert first["better"] == "strong" and first["n_shared"] == 12
    assert first["p_value"] == pytest.approx(2 / 2 ** 12)  # every clip favours 'strong'
    assert first["p_holm"] == pytest.approx(min(1.0, 2 * first["p_value"]))
    assert bool(first["distinguishable"]) and not bool(second["distinguishable"])
    assert ranking_chain(tests).startswith("strong > ") and " ≈ " in ranking_chain(tests)


def test_mean98_99_is_tested_on_per_clip_means_and_headlines_pick_it():
    rows = _rows({("a", "unit-curve", "97"): [0.0] * 6, ("a", "unit-curve", "98"): [1.0, 1.1, 1.2, 1.3, 1.4, 1.5],
                  ("a", "unit-curve", "99"): [0.8] * 6,
                  ("b", "unit-curve", "97"): [1.0] * 6, ("b", "unit-curve", "98"): [0.0] * 6,
                  ("b", "unit-curve", "99"): [0.2] * 6})
    lb = leaderboard_table(rows, [])
    percentile = {"unit-curve": MetricMeta("temporal", True, per_percentile=True)}
    assert headline_columns(lb, percentile) == ["unit-curve[mean98_99]"]
    # a metric swept over another integer parameter (e.g. layers randomised) keeps every step
    steps = {"unit-curve": MetricMeta("sanity", False)}
    assert headline_columns(lb, steps) == ["unit-curve[97]", "unit-curve[98]", "unit-curve[99]"]
    tests = neighbour_tests(lb, rows, ["unit-curve[mean98_99]"])
    assert tests.iloc[0]["better"] == "a" and tests.iloc[0]["better_mean"] == pytest.approx((1.25 + 0.8) / 2)
    assert tests.iloc[0]["p_value"] == pytest.approx(2 / 2 ** 6)  # six distinct per-clip gains, all positive


def test_family_ranks_and_metric_agreement_from_a_leaderboard():
    lb = pd.DataFrame({"dataset": ["d"] * 3, "detector": ["x"] * 3, "explainer": ["a", "b", "c"],
                       "m1.mean": [0.9, 0.5, 0.1], "m1.rank": [1.0, 2.0, 3.0],
                       "m2.mean": [0.1, 0.5, 0.9], "m2.rank": [3.0, 2.0, 1.0],
                       "m3.mean": [0.8, 0.7, 0.6], "m3.rank": [1.0, 2.0, 3.0]})
    ranks = family_ranks(lb, {"f1": ["m1", "m3"], "f2": ["m2"]})
    f1 = ranks[ranks["family"] == "f1"].set_index("explainer")
    assert f1.loc["a", "borda"] == 4 and f1.loc["a", "borda_rank"] == 1 and f1.loc["c", "mean_rank"] == 3
    every = ranks[ranks["family"] == "all"].set_index("explainer")
    assert every.loc["a", "borda"] == 2 + 0 + 2 and every.loc["c", "borda"] == 0 + 2 + 0
    agreement = metric_agreement(lb, ["m1", "m2", "m3"]).set_index(["metric_a", "metric_b"])
    assert agreement.loc[("m1", "m2"), "tau"] == pytest.approx(-1.0)
    assert agreement.loc[("m1", "m3"), "tau"] == pytest.approx(1.0)
    assert agreement.loc[("m1", "m3"), "n_groups"] == 1


def test_split_column():
    assert split_column("ff[95]") == ("ff", "95")
    assert split_column("sps") == ("sps", "")
    assert split_column("chunk_f1[mean98_99]") == ("chunk_f1", "mean98_99")


def test_control_tests_are_one_sided_in_the_metric_direction_with_holm_over_explainers():
    gains = np.arange(1.0, 11.0) / 100  # ten distinct per-clip gains
    base = np.linspace(0.2, 0.4, 10)
    rows = _rows({("random", "unit-score", ""): list(base), ("good", "unit-score", ""): list(base + gains),
                  ("worse", "unit-score", ""): list(base - gains),
                  ("random", "unit-error", ""): list(base), ("good", "unit-error", ""): list(base - gains),
                  ("worse", "unit-error", ""): list(base + gains)})
    lb = leaderboard_table(rows, [])
    meta = {"unit-score": MetricMeta("localisation", True), "unit-error": MetricMeta("localisation", False)}
    out = control_tests(lb, rows, ["unit-error", "unit-score"], meta=meta).set_index(["metric", "explainer"])
    assert sorted(out.index) == [("unit-error", "good"), ("unit-error", "worse"), ("unit-score", "good"),
                                 ("unit-score", "worse")]
    for metric in ("unit-score", "unit-error"):  # lower is better for unit-error: 'good' is below random
        good, worse = out.loc[(metric, "good")], out.loc[(metric, "worse")]
        assert good["n_shared"] == 10 and good["control"] == "random"
        assert good["p_value"] == pytest.approx(1 / 2 ** 10)  # exact one-sided: every clip favours 'good'
        assert worse["p_value"] == pytest.approx(1.0)
        assert good["p_holm"] == pytest.approx(2 / 2 ** 10)  # smallest of two p-values, times two
        assert bool(good["beats_control"]) and not bool(worse["beats_control"])
    assert out.loc[("unit-score", "good"), "control_mean"] == pytest.approx(base.mean())


def test_control_tests_without_the_control_explainer_are_empty():
    rows = _rows({("a", "unit-score", ""): [0.1, 0.2, 0.3], ("b", "unit-score", ""): [0.3, 0.2, 0.1]})
    out = control_tests(leaderboard_table(rows, []), rows, ["unit-score"])
    assert out.empty and "beats_control" in out.columns


def test_top_group_runs_from_the_leader_to_the_first_distinguishable_pair():
    from benchmark.statistics import top_group
    tests = pd.DataFrame({"position": [3, 1, 2, 4], "better": ["c", "a", "b", "d"], "worse": ["d", "b", "c", "e"],
                          "distinguishable": [True, False, False, False]})
    assert top_group(tests) == ["a", "b", "c"]  # c > d separates; d ≈ e further down does not join
    tests["distinguishable"] = [False, True, False, False]
    assert top_group(tests) == ["a"]
    assert top_group(tests.iloc[0:0]) == []


def test_degenerate_columns_are_flagged_and_left_unranked():
    from benchmark.leaderboard import leaderboard_table
    from benchmark.statistics import degenerate_columns
    from benchmark.store import rows_frame
    rows = []
    for explainer, offset in (("a", 0.0), ("b", 0.3), ("c", 0.6)):
        for clip in range(6):
            base = {"dataset": "d", "machine": "m", "section": "00", "domain": "source", "clip_id": f"c{clip}",
                    "label": 1, "detector": "det", "detector_seed": 0, "explainer": explainer, "chance": np.nan}
            rows.append({**base, "metric": "test-vary", "param": "", "value": offset + 0.01 * clip})
            rows.append({**base, "metric": "test-const", "param": "", "value": 0.5 + 0.01 * clip})  # same per clip
            rows.append({**base, "metric": "test-sat", "param": "", "value": 1.0 if explainer != "c" else 0.9})
    lb = leaderboard_table(rows_frame(rows), [])
    flagged = degenerate_columns(lb).set_index("metric")["reason"]
    assert set(flagged.index) == {"test-const", "test-sat"}
    assert flagged["test-const"].startswith("constant across explainers")
    assert flagged["test-sat"].startswith("saturated")  # means differ (1 vs 0.9) but no clip varies
    assert lb["test-const.rank"].isna().all() and lb["test-sat.rank"].isna().all()
    assert lb.set_index("explainer")["test-vary.rank"].to_dict() == {"a": 3, "b": 2, "c": 1}


def test_ff_segment_is_published_but_not_a_headline():
    """The random map won ff_segment in the quick tables (peaks everywhere replace the whole annotation)."""
    from benchmark.statistics import headline_columns, metric_meta
    lb = pd.DataFrame({"dataset": ["d"], "detector": ["det"], "explainer": ["e"], "ff[90].mean": [0.1],
                       "ff[mean98_99].mean": [0.1], "ff_segment[90].mean": [0.2], "ff_segment[mean98_99].mean": [0.2]})
    assert headline_columns(lb) == ["ff[mean98_99]"]
    assert metric_meta("ff_segment").ranked is False and metric_meta("ff").ranked is True


def test_smallest_attainable_holm_p_says_when_a_ranking_cannot_reject():
    from benchmark.statistics import smallest_holm_p
    # 4 clips, 2 explainers: the best a two-sided exact Wilcoxon can do is 2/16 = 0.125 > 0.05
    assert smallest_holm_p(4, 2) == pytest.approx(0.125)
    # 8 clips, 13 explainers: 12 x 2/256 = 0.094 -- strict ranks 1..13 were printed at this n
    assert smallest_holm_p(8, 13) == pytest.approx(12 * 2 / 256) and smallest_holm_p(8, 13) > 0.05
    assert smallest_holm_p(16, 13) < 0.05 and smallest_holm_p(0, 5) == 1.0 and smallest_holm_p(30, 1) == 1.0
