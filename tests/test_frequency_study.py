"""The frequency study's tables (benchmark/frequency_study.py) and the suite that publishes them end to end."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.frequency_study import feature_table, sweep_table
from benchmark.store import Store
from tests.engine_plugins import run_suite_text


def detector_rows(rows: list[tuple[str, str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": d, "detector": det, "machine": m, "section": s, "auc": a, "pauc": a - 0.1,
                          "n_normal": 10, "n_anomalous": 10} for d, det, m, s, a in rows])


def test_sweep_table_pairs_each_cutoff_with_the_unfiltered_auc():
    detectors = detector_rows([
        ("m", "ae", "all", "all", 0.9), ("m", "ae", "fan", "00", 0.8),
        ("m.lowpass-400hz", "ae", "all", "all", 0.6), ("m.lowpass-400hz", "ae", "fan", "00", 0.55),
        ("m.highpass-2000hz", "ae", "all", "all", 0.7), ("m.stft", "ae", "all", "all", 0.95)])
    records = [{"cell": "train", "dataset": "m.lowpass-400hz", "detector": "ae", "log": {"val_accuracy": 0.25}},
               {"cell": "train", "dataset": "m.highpass-2000hz", "detector": "ae", "log": {}}]
    table = sweep_table(detectors, records)
    assert list(table["filter"]) == ["highpass", "lowpass", "lowpass"]  # the stft variant is not swept
    assert list(table["cutoff_hz"]) == [2000.0, 400.0, 400.0]
    assert list(table["machine"]) == ["all", "all", "fan"]
    np.testing.assert_allclose(table["unfiltered_auc"], [0.9, 0.9, 0.8])
    np.testing.assert_allclose(table["auc_drop"], [0.2, 0.3, 0.25])
    # the auxiliary accuracy is one number per train cell: on its pooled row only
    assert np.isnan(table["aux_accuracy"][0]) and table["aux_accuracy"][1] == 0.25 and np.isnan(
        table["aux_accuracy"][2])
    assert sweep_table(detector_rows([("m", "ae", "all", "all", 0.9)]), []) is None


def test_feature_table_compares_the_two_grids():
    detectors = detector_rows([("m", "ast", "all", "all", 0.8), ("m.stft", "ast", "all", "all", 0.9),
                               ("m.stft.lowpass-400hz", "ast", "all", "all", 0.5), ("m", "ae", "all", "all", 0.7)])
    table = feature_table(detectors)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["dataset"], row["detector"], row["auc_mel"], row["auc_stft"]) == ("m", "ast", 0.8, 0.9)
    assert row["auc_gain_stft"] == pytest.approx(0.1)
    assert feature_table(detectors[detectors["dataset"] == "m"]) is None


FREQUENCY_SUITE = """
name = "freq"
seeds = [0]
metrics = ["band_mass_spearman", "band_top_hit"]
[evaluate]
clips = "all"
max_clips = 8
batch_size = 8
examples = 0
[datasets.synthetic-machines]
size = "tiny"
[detectors.dense_ae]
budget = { epochs = 1 }
[explainers.slime]
segmentation = "frequency"
n_samples = 16
target = "decision"
[explainers.error_map]
[explainers.random]
[filter_sweep]
filters = ["lowpass"]
cutoffs_hz = [500, 4000]
[[variants]]
dataset = "synthetic-machines"
features = "stft"
explain = false
"""


def test_the_frequency_suite_publishes_sweep_bands_and_grids(tmp_path):
    summary, folder, _ = run_suite_text(tmp_path, FREQUENCY_SUITE, "freq")
    assert summary.exit_code == 0 and summary.failed == []
    assert summary.done == 4 + 3  # base + 2 cutoffs + stft train cells; three evaluate cells
    detectors = pd.read_csv(folder / "detectors.csv", dtype={"section": str}).set_index(
        ["dataset", "machine", "section"])
    sweep = pd.read_csv(folder / "filter_sweep.csv", dtype={"section": str})
    pooled = sweep[sweep["machine"] == "all"].set_index("cutoff_hz")
    assert list(pooled.index) == [500.0, 4000.0]
    for cutoff in (500, 4000):
        label = f"synthetic-machines.lowpass-{cutoff}hz"
        assert pooled.loc[cutoff, "auc"] == pytest.approx(detectors.loc[(label, "all", "all"), "auc"])
        assert pooled.loc[cutoff, "unfiltered_auc"] == pytest.approx(
            detectors.loc[("synthetic-machines", "all", "all"), "auc"])
    grids = pd.read_csv(folder / "stft_vs_mel.csv", dtype={"section": str})
    assert grids.loc[grids["machine"] == "all", "auc_stft"].item() == pytest.approx(
        detectors.loc[("synthetic-machines.stft", "all", "all"), "auc"])
    board = pd.read_csv(folder / "leaderboard.csv").set_index("explainer")
    assert (board["band_top_hit.chance"] > 0).all() and (board["band_mass_spearman.chance"] == 0).all()
    # band profiles: the median of each clip's band shares, recomputed here from the stored explanations
    profiles = pd.read_csv(folder / "band_profiles.csv", dtype={"section": str})
    assert set(profiles["explainer"]) == {"slime", "error_map", "random"} and set(profiles["band"]) == set(range(8))
    store = Store(tmp_path / "freq")
    record = next(r for r in store.records(store.suite_manifest("freq")["evaluate"])
                  if r.get("explainer") == "error_map")
    explained = store.status(record["explain_key"])
    from benchmark.explain_step import EXPLANATION_FILE, StoredExplanations
    relpath = store.cell_dir(record["explain_key"]).relative_to(store.root).as_posix() + "/" + EXPLANATION_FILE
    maps = StoredExplanations.load(store, relpath, len(explained["clip_ids"])).attribution.double().numpy()
    positive = np.clip(maps, 0, None)
    rows_per_band = maps.shape[1] // 8
    shares = positive.reshape(len(maps), 8, rows_per_band, -1).sum(axis=(2, 3)) / positive.sum(axis=(1, 2))[:, None]
    labels = pd.Series(["anomaly" if "anomaly" in i else "inlier" for i in explained["clip_ids"]])
    ours = profiles[profiles["explainer"] == "error_map"].set_index(["condition", "band"])
    for condition in ("inlier", "anomaly"):
        expected = np.median(shares[(labels == condition).to_numpy()], axis=0)
        np.testing.assert_allclose(ours.loc[condition]["median_mass"].to_numpy(), expected, atol=1e-5)
        assert (ours.loc[condition]["n_clips"] == (labels == condition).sum()).all()
    figures = {p.name for p in (folder / "figures").iterdir()}
    assert "sweep-synthetic-machines.png" in figures and "bands-synthetic-machines-dense_ae.png" in figures
    page = (folder / "README.md").read_text()
    assert "## Frequency study" in page and "STFT (25 ms / 10 ms) vs mel input" in page
