"""Explain once, score separately: stored explanations and metric values are reused, the tables equal a cold
run's, metric clip budgets, and generated data stacked once."""
from pathlib import Path

import pandas as pd
import pytest
import torch

import benchmark.data_cache as data_cache
from benchmark.registry import registry
from benchmark.store import Store
from benchmark.suites import load_suite
from tests.engine_plugins import run_suite_text

SUITE = """
name = "t"
seeds = [0]
metrics = METRICS
[evaluate]
max_clips = 4
batch_size = 2
[datasets.test-blobs]
[detectors.test-template]
[explainers.error_map]
[explainers.random]
"""
ONE = SUITE.replace("METRICS", '["test-band-mass"]')
TWO = SUITE.replace("METRICS", '["test-band-mass", "complexity"]')


def run(tmp_path: Path, text: str, out: str):
    summary, folder, _ = run_suite_text(tmp_path, text, out)
    return summary, folder, Store(tmp_path / out)


def evaluate_records(store: Store) -> list[dict]:
    keys = store.suite_manifest("t")["evaluate"]
    return [r for r in store.records(keys) if r["status"] == "done"]


def test_adding_a_metric_reuses_every_stored_explanation(tmp_path):
    first, _, store = run(tmp_path, ONE, "runs")
    assert first.done == 3
    assert {r["cost"]["explanation"] for r in evaluate_records(store)} == {"computed"}
    assert max(r["cost"]["explainer_forward"] for r in evaluate_records(store)) > 0  # error map: one pass
    second, folder, store = run(tmp_path, TWO, "runs")
    assert second.done == 2 and second.cached == 1  # the train cell is cached, both evaluate cells re-assembled
    for r in evaluate_records(store):
        assert r["cost"]["explanation"] == "stored" and r["cost"]["explainer_forward"] == 0
        assert r["cost"]["metrics_computed"] == 1 and r["cost"]["metrics_reused"] == 1
    _, cold, _ = run(tmp_path, TWO, "cold")
    assert (folder / "leaderboard.csv").read_bytes() == (cold / "leaderboard.csv").read_bytes()
    lb = pd.read_csv(folder / "leaderboard.csv")
    assert {"complexity.mean", "test-band-mass.mean"} <= set(lb.columns)


def test_a_metric_added_over_stored_maps_publishes_what_a_cold_run_does(tmp_path):
    """Every table but the cost equals a cold run's, the trained interpreter's learning curve included (it went
    missing when the re-assembled cell did not load the interpreter)."""
    def suite(text: str) -> str:  # L-MAC learns from waveforms: the tiny synthetic machines have them
        return (text.replace("[datasets.test-blobs]", '[datasets.synthetic-machines]\nsize = "tiny"')
                + "[explainers.lmac]\ntrain_clips = 6\nbudget = { epochs = 2, batch_size = 2 }\n")
    run(tmp_path, suite(ONE), "runs")
    _, folder, store = run(tmp_path, suite(TWO), "runs")
    assert {r["cost"]["explanation"] for r in evaluate_records(store)} == {"stored"}
    _, cold, _ = run(tmp_path, suite(TWO), "cold")
    training = pd.read_csv(folder / "training.csv")
    assert (training.kind == "interpreter").sum() >= 1
    tables = sorted(p.name for p in cold.glob("*.csv") if p.name != "cost.csv")
    assert "training.csv" in tables and "leaderboard.csv" in tables
    for name in tables:
        assert (folder / name).read_bytes() == (cold / name).read_bytes(), name


def test_a_damaged_stored_explanation_is_explained_again(tmp_path):
    _, clean, store = run(tmp_path, ONE, "runs")
    record = evaluate_records(store)[0]
    part = store.cell_dir(record["explain_key"]) / "explanation.pt"
    part.write_bytes(part.read_bytes()[:100])
    summary, folder, _ = run(tmp_path, ONE, "runs")
    assert summary.done == 1
    assert (folder / "leaderboard.csv").read_bytes() == (clean / "leaderboard.csv").read_bytes()


def test_a_metric_clip_budget_scores_a_seeded_subset(tmp_path):
    text = TWO + "[metric_clips]\ncomplexity = 2\n"
    _, folder, _ = run(tmp_path, text, "runs")
    lb = pd.read_csv(folder / "leaderboard.csv").set_index("explainer")
    assert (lb["complexity.n"] == 2).all() and (lb["test-band-mass.n"] == 4).all()
    rows = Store(tmp_path / "runs").rows(Store(tmp_path / "runs").suite_manifest("t")["evaluate"])
    clips = rows[rows["metric"] == "complexity"].groupby("explainer")["clip_id"].apply(sorted)
    assert clips["error_map"] == clips["random"] and len(clips["random"]) == 2  # the same subset for every cell
    path = tmp_path / "bad.toml"
    path.write_text(TWO + "[metric_clips]\nnot_a_metric = 2\n")
    with pytest.raises(Exception, match="neither a metric nor a family"):
        load_suite(str(path))


def test_generated_splits_are_stacked_once(tmp_path, monkeypatch):
    store = Store(tmp_path)
    config = load_suite("smoke").datasets[0]
    dataset = registry("dataset").make(config.name, **{**config.params, "size": "tiny"})
    config = type(config)(config.kind, config.name, {**config.params, "size": "tiny"})
    table = data_cache.cached_table(store, config, dataset, "test")
    stored = list((tmp_path / "data").glob("*.pt"))
    assert len(stored) == 1

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(data_cache, "load_table", no_rendering)
    again = data_cache.cached_table(store, config, dataset, "test")
    assert again.ids == table.ids and again.meta == table.meta
    for name in data_cache.TENSORS:
        a, b = getattr(table, name), getattr(again, name)
        assert (a is None and b is None) or (a.dtype == b.dtype and torch.equal(a, b)), name
    assert "waveform" in data_cache._pack(table)["pcm"]  # 16-bit PCM stored as int16, exactly
