"""DCASE detection scoring against a table whose AUCs are worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.metrics.detection import TABLE_COLUMNS, detection_table, harmonic_mean, pauc

# Section fan/00, seed 0:
#   source normals 0.1 0.2 0.3 0.4, target normals 0.5 0.6 0.7 0.8,
#   anomalies 0.45 (source), 0.9 (source), 0.75 (target), 0.95 (target).
# AUC(source): every anomaly beats every source normal -> 16/16 = 1.
# AUC(target): 0.45 beats 0, 0.9 beats 4, 0.75 beats 0.5 0.6 0.7 = 3, 0.95 beats 4 -> 11/16.
# AUC(all):    0.45 beats 4, 0.9 beats 8, 0.75 beats 7, 0.95 beats 8 -> 27/32.
# pAUC: the two top clips are anomalies, then the first normal (FPR 1/8 > 0.1): the ROC runs flat at
#   TPR 0.5 from FPR 0 to 0.1, area 0.05; McClish: 0.5 (1 + (0.05 - 0.005) / (0.1 - 0.005)) = 14/19.
# Seed 1 moves the source anomaly 0.45 to 0.05, below every normal:
#   AUC(source) 12/16, AUC(target) 11/16, AUC(all) 23/32; the top of the ranking, so pAUC, is unchanged.
# Section pump/00 separates perfectly in both seeds (all four values 1); its unlabelled clip (-1,
# scored 100) would break that if it were counted.
FAN = [("s", 0, 0.1), ("s", 0, 0.2), ("s", 0, 0.3), ("s", 0, 0.4), ("t", 0, 0.5), ("t", 0, 0.6),
       ("t", 0, 0.7), ("t", 0, 0.8), ("s", 1, 0.45), ("s", 1, 0.9), ("t", 1, 0.75), ("t", 1, 0.95)]
PUMP = [("s", 0, 0.1), ("s", 0, 0.2), ("t", 0, 0.3), ("s", 1, 0.9), ("t", 1, 0.8), ("s", -1, 100.0)]
DOMAIN = {"s": "source", "t": "target"}
P = 14 / 19


def _rows(seed: int, detector: str = "ae") -> list[dict]:
    rows = []
    for machine, clips in (("fan", FAN), ("pump", PUMP)):
        for i, (dom, label, value) in enumerate(clips):
            if seed == 1 and machine == "fan" and value == 0.45:
                value = 0.05
            rows.append({"dataset": "toy", "machine": machine, "section": "00", "domain": DOMAIN[dom],
                         "clip_id": f"{machine}_{i}", "label": label, "detector": detector,
                         "detector_seed": seed, "value": value, "explainer": "-"})
    return rows


def _hmean(*v: float) -> float:
    return len(v) / sum(1 / x for x in v)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return detection_table(pd.DataFrame(_rows(1) + _rows(0) + _rows(0, "dense_ae")))


def test_rows_columns_and_order(table):
    assert list(table.columns) == TABLE_COLUMNS
    keys = list(zip(table.dataset, table.detector, table.machine, table.section, strict=True))
    assert keys == [("toy", "ae", "fan", "00"), ("toy", "ae", "pump", "00"), ("toy", "ae", "all", "all"),
                    ("toy", "dense_ae", "fan", "00"), ("toy", "dense_ae", "pump", "00"),
                    ("toy", "dense_ae", "all", "all")]
    assert table.n_seeds.tolist() == [2, 2, 2, 1, 1, 1]
    assert table.n_normal.tolist() == [8, 3, 11] * 2
    assert table.n_anomalous.tolist() == [4, 2, 6] * 2


def test_section_values_by_hand(table):
    fan = table.iloc[0]
    assert fan.auc == pytest.approx((27 / 32 + 23 / 32) / 2)
    assert fan.auc_std == pytest.approx((4 / 32) / math.sqrt(2))
    assert fan.auc_source == pytest.approx((1 + 12 / 16) / 2)
    assert fan.auc_target == pytest.approx(11 / 16)
    assert fan.pauc == pytest.approx(P)
    assert fan.official_score == pytest.approx((_hmean(1, 11 / 16, P) + _hmean(12 / 16, 11 / 16, P)) / 2)
    pump = table.iloc[1]
    assert [pump.auc, pump.auc_source, pump.auc_target, pump.pauc, pump.official_score] == [1, 1, 1, 1, 1]
    assert pump.auc_std == 0
    single_seed = table.iloc[3]
    assert single_seed.auc == pytest.approx(27 / 32) and math.isnan(single_seed.auc_std)


def test_pooled_row_by_hand(table):
    pooled = table.iloc[2]
    # seed 0, 11 normals x 6 anomalies: fan 0.45 beats 7 (4 fan + 3 pump normals), 0.9 and 0.95 beat 11,
    # 0.75 beats 10; pump 0.9 beats 11, pump 0.8 beats 10 and ties fan's 0.8 (half) -> 60.5/66.
    # Seed 1: 0.05 beats none -> 53.5/66.
    assert pooled.auc == pytest.approx((60.5 + 53.5) / 66 / 2)
    official = [_hmean(1, 11 / 16, P, 1, 1, 1), _hmean(12 / 16, 11 / 16, P, 1, 1, 1)]
    assert pooled.official_score == pytest.approx(sum(official) / 2)
    seed0 = pd.DataFrame(_rows(0))
    seed0 = seed0[seed0.label >= 0]
    assert table.iloc[5].pauc == pytest.approx(roc_auc_score(seed0.label, seed0.value, max_fpr=0.1))


def test_undefined_terms_are_nan_and_left_out():
    # one machine without target clips: AUC(target) is undefined, the official score uses the rest
    rows = [{"dataset": "d", "machine": "m", "section": "0", "domain": "source", "clip_id": str(i),
             "label": int(i >= 3), "detector": "x", "detector_seed": 0, "value": float(i)} for i in range(5)]
    t = detection_table(pd.DataFrame(rows))
    assert math.isnan(t.auc_target[0]) and t.auc_source[0] == 1 and t.official_score[0] == 1
    empty = detection_table(pd.DataFrame(rows).assign(label=-1))
    assert empty.empty and list(empty.columns) == TABLE_COLUMNS


def test_harmonic_mean_and_pauc_chance():
    assert harmonic_mean([0.5, 1.0, float("nan")]) == pytest.approx(2 / 3)
    assert harmonic_mean([0.0, 1.0]) == 0.0
    assert math.isnan(harmonic_mean([float("nan")]))
    # a score that ignores the label: pAUC at chance 0.5 in expectation; exactly 0.5 for tied scores
    assert pauc(np.array([0, 1, 0, 1]), np.zeros(4)) == pytest.approx(0.5)
