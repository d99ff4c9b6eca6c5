"""The driver end to end on fast test plugins: results, cache, resume, failure isolation, skips."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import benchmark.evaluation as evaluation_module
from benchmark.store import Store
from tests.engine_plugins import run_suite_text

SUITE = """
name = "t"
seeds = [0]
metrics = ["test-band-mass"]
[evaluate]
max_clips = 4
batch_size = 2
[datasets.test-blobs]
[detectors.test-template]
[detectors.test-scorer]
[explainers.error_map]
[explainers.random]
"""


def run(tmp_path: Path, text: str = SUITE, out: str = "runs"):
    summary, folder, _ = run_suite_text(tmp_path, text, out)
    return summary, folder


def test_results_skip_and_cache(tmp_path):
    summary, folder = run(tmp_path)
    assert summary.exit_code == 0 and summary.failed == []
    assert summary.done == 2 + 3  # two train cells, three applicable evaluate cells
    assert summary.skipped == ["evaluate test-blobs / test-scorer / error_map / seed 0: "
                               "error_map needs reconstruction but detector test-scorer lacks capability "
                               "'reconstructs'"]
    lb = pd.read_csv(folder / "leaderboard.csv")
    row = lb.set_index(["detector", "explainer"])
    # the error map of the template detector is exactly the planted band: all its mass is inside the mask
    assert row.loc[("test-template", "error_map"), "test-band-mass.mean"] > 0.5
    assert row.loc[("test-template", "random"), "test-band-mass.mean"] == pytest.approx(
        row.loc[("test-template", "random"), "test-band-mass.chance"], abs=0.05)
    assert row.loc[("test-template", "error_map"), "test-band-mass.rank"] == 1
    assert row.loc[("test-scorer", "error_map"), "status"].startswith("skipped: error_map needs reconstruction")
    again, _ = run(tmp_path)
    assert again.done == 0 and again.cached == 6


def test_failing_cells_are_recorded_and_the_run_goes_on(tmp_path):
    text = SUITE.replace("[explainers.random]", "[explainers.random]\n[explainers.test-badshape]")
    text = text.replace("[detectors.test-scorer]", "[detectors.test-scorer]\nnan_scores = true")
    summary, folder = run(tmp_path, text)
    assert summary.exit_code == 1
    reasons = "\n".join(summary.failed)
    assert "test-badshape" in reasons and "shape (2, 3)" in reasons
    assert "train test-blobs / test-scorer / seed 0: CellFailure: detector test-scorer gave non-finite" in reasons
    lb = pd.read_csv(folder / "leaderboard.csv").set_index(["detector", "explainer"])
    assert lb.loc[("test-template", "error_map"), "status"] == "done"
    assert lb.loc[("test-template", "test-badshape"), "status"].startswith("failed: CellFailure")
    assert lb.loc[("test-scorer", "random"), "status"].startswith("failed: detector training failed")


def test_interrupted_run_resumes_to_identical_tables(tmp_path, monkeypatch):
    _, clean = run(tmp_path, out="clean")
    calls = {"n": 0}
    original = evaluation_module.run_evaluate_cell

    def dies_on_second(cell, ws, progress=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(cell, ws, progress)

    monkeypatch.setattr(evaluation_module, "run_evaluate_cell", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, out="resumed")
    store = Store(tmp_path / "resumed")
    done = [p for p in (tmp_path / "resumed" / "cells").iterdir() if (p / "cell.json").is_file()]
    kinds = sorted(store.status(p.name)["cell"] for p in done)
    # two train cells, the skipped cell and the first evaluate cell with its explain and metric parts survived
    assert kinds == ["evaluate", "evaluate", "explain", "metric", "train", "train"]
    monkeypatch.setattr(evaluation_module, "run_evaluate_cell", original)
    summary, resumed = run(tmp_path, out="resumed")
    assert summary.cached == 4 and summary.done == 2
    assert (clean / "leaderboard.csv").read_bytes() == (resumed / "leaderboard.csv").read_bytes()
    assert (clean / "detectors.csv").read_bytes() == (resumed / "detectors.csv").read_bytes()
    assert store.suite_manifest("t")["evaluate"]


def test_a_pool_of_workers_gets_the_longest_cells_first(tmp_path):
    """With remote workers the driver hands over cells by estimated cost, longest first; the tables do not
    depend on the order (same leaderboard as a local run in suite order)."""
    import torch

    from benchmark.cells import expand
    from benchmark.executors import LocalExecutor
    from benchmark.leaderboard import publish
    from benchmark.runner import run_suite
    from benchmark.suites import load_suite

    class Recording(LocalExecutor):
        remote = True

        def run(self, cells, ws, **kw):
            self.order = [c.key for c in cells]
            yield from super().run(cells, ws, **kw)

    path = tmp_path / "t.toml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    trains, evals = expand(suite)
    # suite order reversed in cost: the last cell is the longest
    weights = {c.key: float(i + 1) for i, c in enumerate([*trains, *evals])}
    pool = Recording()
    summary = run_suite(suite, out=tmp_path / "pool", device=torch.device("cpu"), executor=pool, weights=weights)
    assert summary.failed == []
    # train cells first (evaluate cells wait for them), each kind longest first; the inapplicable evaluate cell
    # (test-scorer / error_map) is recorded as skipped before any cell runs and never handed over
    runnable = [c for c in evals if (c.train.detector.name, c.explainer.name) != ("test-scorer", "error_map")]
    assert pool.order == [c.key for c in reversed(trains)] + [c.key for c in reversed(runnable)]
    assert summary.done == 5 and len(summary.skipped) == 1 and len(runnable) == 3
    _, local = run(tmp_path, out="local")
    pooled = publish(Store(tmp_path / "pool"), suite.name, tmp_path / "lb-pool")
    assert (pooled / "leaderboard.csv").read_bytes() == (local / "leaderboard.csv").read_bytes()


def test_seeds_outside_the_explained_ones_train_score_and_publish(tmp_path):
    text = (SUITE.replace("seeds = [0]", "seeds = [0, 1, 2]").replace("max_clips = 4", "max_clips = 4\nseeds = [1]")
            .replace("[detectors.test-scorer]", "[detectors.test-scorer]\nseed_noise = 100.0"))
    summary, folder = run(tmp_path, text)
    assert summary.exit_code == 0 and summary.failed == []
    assert summary.done == 2 * 3 + 3  # every detector trains under 3 seeds; seed 1's applicable cells explain
    assert set(pd.read_csv(folder / "detectors.csv").n_seeds) == {3}  # detection over every trained seed
    results = pd.read_parquet(folder / "results.parquet")
    assert set(results[results.explainer == "-"].detector_seed) == {0, 1, 2}  # test scores of every seed
    assert set(results[results.explainer != "-"].detector_seed) == {1}  # explanations of seed 1's detectors
    lb = pd.read_csv(folder / "leaderboard.csv").set_index(["detector", "explainer"])
    assert lb.loc[("test-template", "error_map"), "status"] == "done"
    assert lb.loc[("test-template", "error_map"), "test-band-mass.rank"] == 1
    # the explanations are read against the detectors they came from: the flag's AUC is seed 1's, the
    # detectors table's the mean over every seed
    scores = results[results.metric == "anomaly_score"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1, 2] and manifest["explain_seeds"] == [1]
    family = pd.read_csv(folder / "localisation.csv").set_index(["detector", "explainer"])
    detectors = pd.read_csv(folder / "detectors.csv").query("machine == 'all'").set_index("detector")
    spread = []
    for detector in ("test-template", "test-scorer"):
        auc = {seed: roc_auc_score(part.label, part.value) for seed, part in
               scores[scores.detector == detector].groupby("detector_seed")}
        assert family.loc[(detector, "random"), "detector_auc"] == pytest.approx(auc[1], abs=1e-4)
        assert detectors.loc[detector, "auc"] == pytest.approx(np.mean(list(auc.values())), abs=1e-4)
        spread.append(abs(auc[1] - np.mean(list(auc.values()))))
    assert max(spread) > 1e-3  # the seeds' detectors differ, so the two readings can be told apart
    page = (folder / "README.md").read_text()
    assert "The explainers ran on the detectors of seed(s) 1 only" in page


def test_seeds_that_explain_nothing_are_an_error_with_explainers_and_a_notice_without(tmp_path, capsys):
    from benchmark.cli import main
    suite = tmp_path / "t.toml"
    suite.write_text(SUITE.replace("seeds = [0]", "seeds = [0, 1, 2]").replace("max_clips = 4",
                                                                               "max_clips = 4\nseeds = [1]"))
    base = ["run", "--suite", str(suite), "--out", str(tmp_path / "runs"), "--leaderboards", str(tmp_path / "lb"),
            "--estimate"]
    assert main(base + ["--seeds", "0,2", "--explainers", "random"]) != 0
    err = capsys.readouterr().err
    assert "--seeds 0,2: suite 't' explains the detectors of seed(s) 1 only" in err and "add one of 1" in err
    assert main(base + ["--seeds", "2"]) == 0
    assert "note: --seeds 2 trains and scores detectors only" in capsys.readouterr().err
    assert main(base + ["--seeds", "1"]) == 0
    assert "note:" not in capsys.readouterr().err
