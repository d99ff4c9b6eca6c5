"""The claims table: verdicts from paired tests on per-clip values, and why a claim is not testable."""
import numpy as np
import pandas as pd
import pytest

from benchmark.claims import GRADIENT_FAMILY, claims_table, score_correlation


def _rows(n_clips: int, seeds=(0,)) -> pd.DataFrame:
    """Per-clip rows where MAE beats AE everywhere, the error map beats every method and Grad-CAM is last."""
    g = np.random.default_rng(0)
    rows = []
    ff_level = {"error_map": 0.5, "saliency": 0.35, "integrated_gradients": 0.3, "smoothgrad": 0.25,
                "gradient_shap": 0.2, "grad_cam": 0.05}
    for seed in seeds:
        for det, bonus in (("ae", 0.0), ("mae", 0.1)):
            for i in range(n_clips):
                base = {"dataset": "d", "clip_id": f"c{i}", "detector": det, "detector_seed": seed, "label": 1}
                for ex, level in ff_level.items():
                    noise = g.normal(0, 0.01)
                    rows.append({**base, "explainer": ex, "metric": "ff", "param": "90",
                                 "value": level + bonus + noise})
                    rows.append({**base, "explainer": ex, "metric": "chunk_f1", "param": "98",
                                 "value": level + bonus + g.normal(0, 0.01)})
            for i in range(2 * n_clips):  # test scores: AE separates better than MAE
                label = i % 2
                rows.append({"dataset": "d", "clip_id": f"t{i}", "detector": det, "detector_seed": seed, "label": label,
                             "explainer": "-", "metric": "anomaly_score", "param": "",
                             "value": label * (1.0 - bonus * 5) + g.normal(0, 0.5)})
    return pd.DataFrame(rows)


def _board(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows.explainer != "-"][["dataset", "detector", "explainer"]].drop_duplicates()


def test_claims_follow_the_paired_tests():
    rows = _rows(12)
    c = claims_table(_board(rows), rows).set_index(["claim", "detector"])
    assert c.loc[("MAE error-map chunk F1 above AE at p98", "mae vs ae"), "verdict"] == "reproduced"
    assert c.loc[("MAE error-map chunk F1 above AE at p98", "mae vs ae"), "n"] == 12
    best = c.xs("the error map is the most faithful of the six gradient/map methods (FF p = 90)", level=0)
    assert set(best.verdict) == {"reproduced"} and " vs saliency 0.3" in best.loc["ae", "ours"]
    worst = c.xs("Grad-CAM is the least faithful of the six (FF p = 90)", level=0)
    assert set(worst.verdict) == {"reproduced"}
    # one seed cannot test a detector-level claim; the interpreters and EnCodec are not in this suite
    auc = c.loc[("AE detection AUC at least MAE's", "ae vs mae")]
    assert auc.verdict == "not resolved at this n" and auc.n == 1 and "unanimous" in auc.reason
    assert c.verdict.notna().all()
    diff = c.loc[("MAE error-map FF above AE (frame FF, p = 90)", "mae vs ae")]
    assert diff.ci_low < diff.difference < diff.ci_high and diff.difference == pytest.approx(0.1, abs=0.01)


def test_an_opposite_effect_is_contradicted_and_a_missing_detector_is_not_testable():
    rows = _rows(10)
    swapped = rows.assign(detector=rows.detector.map({"ae": "mae", "mae": "ae"}))
    c = claims_table(_board(swapped), swapped).set_index("claim")
    assert c.loc["MAE error-map FF above AE (frame FF, p = 90)", "verdict"] == "contradicted"
    only_ae = rows[rows.detector == "ae"]
    c = claims_table(_board(only_ae), only_ae).set_index("claim")
    assert c.loc["MAE error-map chunk F1 above AE at p98", "verdict"] == "not testable here"
    assert "detector mae is not in this suite" in c.loc["MAE error-map chunk F1 above AE at p98", "reason"]
    assert len(GRADIENT_FAMILY) == 6


def test_score_correlation_is_spearman_of_the_two_detectors_test_scores():
    from scipy.stats import spearmanr
    rows = _rows(8)
    got = score_correlation(rows)
    s = rows[rows.metric == "anomaly_score"].pivot_table(index="clip_id", columns="detector", values="value")
    assert got.spearman.iloc[0] == pytest.approx(spearmanr(s.ae, s.mae).statistic) and got.n.iloc[0] == 16


def test_the_interpreter_claim_states_the_reference_levels_of_its_clips():
    rows = _rows(10)
    extra = []
    for i in range(10):
        base = {"dataset": "d", "clip_id": f"c{i}", "detector": "ae", "detector_seed": 0, "label": 1,
                "metric": "si_sdr"}
        extra += [{**base, "explainer": "lmac_td", "param": "", "value": -2.0 + 0.1 * i},
                  {**base, "explainer": "lmac", "param": "", "value": -4.0 + 0.1 * i},
                  {**base, "explainer": "lmac", "param": "input", "value": -8.0},
                  {**base, "explainer": "lmac", "param": "oracle", "value": 12.0 + (i % 2)}]
    rows = pd.concat([rows, pd.DataFrame(extra)], ignore_index=True)
    c = claims_table(_board(rows), rows)
    row = c[c.claim.str.startswith("L-MAC-TD audio") & (c.detector == "ae")].iloc[0]
    assert row.verdict == "reproduced" and row.difference == pytest.approx(2.0)
    assert row.reason == "references: the clip itself -8.0 dB, the ideal mask 12.5 dB"


def _synthesis_rows(agreement_at_zero: float) -> pd.DataFrame:
    """EnCodec's sweeps on 10 clips: agreement 1 with everything kept, `agreement_at_zero` with nothing kept;
    the explanation keeps the decision more often than random selection at 21 %."""
    rows = []
    for i in range(10):
        base = {"dataset": "d", "clip_id": f"c{i}", "detector": "ae", "detector_seed": 0, "label": 1,
                "explainer": "encodec_latent"}
        for metric, at21 in (("agreement", 1.0), ("agreement_random", float(i % 2)), ("drop", 1.0),
                             ("drop_random", 0.0)):
            for q, v in (("100", 1.0), ("21", at21), ("0", agreement_at_zero if metric.startswith("agree") else 0.0)):
                rows.append({**base, "metric": metric, "param": q, "value": v})
    return pd.DataFrame(rows)


def test_an_encodec_claim_on_a_saturated_sweep_is_not_testable():
    live = claims_table(_board(_synthesis_rows(0.0)), _synthesis_rows(0.0))
    live = live[live.claim.str.startswith("EnCodec")].set_index("claim")
    assert live.loc["EnCodec latent explanations: agreement above random latent selection (21 % kept)",
                    "verdict"] == "reproduced"
    flat = claims_table(_board(_synthesis_rows(1.0)), _synthesis_rows(1.0))
    flat = flat[flat.claim.str.startswith("EnCodec")]
    assert set(flat.verdict) == {"not testable here"} and flat.reason.str.contains("saturated sweep").all()
