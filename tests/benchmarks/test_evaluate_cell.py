"""Throughput of a whole evaluate cell (`benchmark.evaluation.run_evaluate_cell`: clip selection, explanations,
metrics, the cost record) for one explainer of each family, cold and warm.

- cold: no stored explanations: the cell explains its clips and scores `METRICS` (each round, since the timed
  outcome is not written to the store);
- warm: the explanations and `METRICS` are stored (a cold outcome finished into the store first), and the cell
  adds one metric (`ADDED`, read off the maps): it loads the explanations, scores only that metric, and its cost
  record shows 0 explainer passes.

Everything runs on `synthetic-machines` size tiny with 30 training clips (8 test clips of 4 s on the dcase grid,
all scored: `clips = "all"`), with `dense_ae` trained for one epoch into a store that each test copies, and
explainer sample counts cut to benchmark scale (`EXPLAINERS`); the workspace has the test split and the detector
loaded before the rounds, as a worker has for every cell after its first. Trained interpreters (L-MAC, L-MAC-TD,
EnCodec) are left out: their cells are dominated by interpreter training, which `run --estimate` prices per
epoch. Each result carries `extra_info["clips_per_s"]` (clips over the mean round; on a CPU rounds are timed by
process CPU time, so clips per CPU-second of all threads, as in the other benchmarks here) and
`extra_info["explainer_passes_per_clip"]` (from the cell's cost record). Run with

    pytest tests/benchmarks/test_evaluate_cell.py --benchmark-only --benchmark-enable
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark.cells import EvaluateCell, expand
from benchmark.evaluation import run_evaluate_cell
from benchmark.outcome import Outcome
from benchmark.store import Store
from benchmark.suites import load_suite
from benchmark.training import run_train_cell
from benchmark.workspace import Workspace
from tests.benchmarks._device import DEVICE, TIMER

# family -> (explainer, its suite table); sample counts small enough that the file runs in about a minute
EXPLAINERS = {
    "reconstruction error": ("error_map", ""),
    "gradient": ("saliency", ""),
    "path integral": ("integrated_gradients", "n_steps = 8"),
    "perturbation": ("occlusion", "sliding_window_shapes = [32, 32]"),
    "surrogate": ("slime", "n_samples = 32"),
    "control": ("random", ""),
}
METRICS = ["ff", "pixel_auroc"]  # one that re-runs the detector, one that reads the map against the truth
ADDED = "complexity"  # the warm cell's new metric: it reads the stored maps only, no explainer pass
ROUNDS = 3


def suite_text(metrics: list[str]) -> str:
    explainers = "\n".join(f"[explainers.{name}]\n{table}" for name, table in EXPLAINERS.values())
    return f"""
name = "cellbench"
seeds = [0]
metrics = {metrics!r}
[evaluate]
clips = "all"
max_clips = 8
batch_size = 8
examples = 0
[datasets.synthetic-machines]
size = "tiny"
train_source = 28  # 3 validation clips: the detector's calibration needs a spread (slime explains its probability)
[detectors.dense_ae]
budget = {{ epochs = 1, patience = 1, batch_size = 8 }}
{explainers}
"""


def evaluate_cells(folder: Path, metrics: list[str]) -> dict[str, EvaluateCell]:
    """The suite's evaluate cells with `metrics`, by explainer name."""
    path = folder / f"cellbench-{len(metrics)}.toml"
    path.write_text(suite_text(metrics))
    _, evals = expand(load_suite(str(path)))
    return {cell.explainer.name: cell for cell in evals}


def finish(store: Store, outcome: Outcome) -> None:
    """Write a cell's outcome (its parts first) as the run's driver does."""
    for part in outcome.parts:
        store.finish(part.key, part.record, part.rows, part.files, part.uses)
    store.finish(outcome.key, outcome.record, outcome.rows, outcome.files, outcome.uses)


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory) -> Path:
    """A store holding the tiny dataset's stacked splits and the trained detector's checkpoint."""
    root = tmp_path_factory.mktemp("cellbench") / "runs"
    suite = tmp_path_factory.mktemp("suite")
    path = suite / "cellbench.toml"
    path.write_text(suite_text(METRICS))
    (train,), _ = expand(load_suite(str(path)))
    store = Store(root)
    finish(store, run_train_cell(train, Workspace(store=store, device=DEVICE)))
    assert store.is_done(train.key)
    return root


@pytest.fixture
def store(trained_store, tmp_path) -> Store:
    """A copy of the trained store of this test's own: what one test stores, another does not find."""
    return Store(shutil.copytree(trained_store, tmp_path / "runs"))


def loaded_workspace(store: Store, cell: EvaluateCell) -> Workspace:
    """A worker's workspace with the cell's test split and detector already loaded, as every cell after a
    worker's first finds it: the rounds time the cell, not the first load."""
    ws = Workspace(store=store, device=DEVICE)
    ws.table(cell.train.dataset, "test")
    ws.detector(cell.train.key, cell.train.detector)
    return ws


def record(benchmark, family: str, cost: dict) -> None:
    benchmark.extra_info.update(family=family, clips=cost["n_clips"],
                                clips_per_s=cost["n_clips"] / benchmark.stats.stats.mean,
                                explainer_passes_per_clip=cost["explainer_forward"] + cost["explainer_backward"])


@pytest.mark.parametrize("family", list(EXPLAINERS))
@pytest.mark.benchmark(group="evaluate cell, cold", timer=TIMER)
def test_cold_cell(benchmark, family, store, tmp_path):
    name = EXPLAINERS[family][0]
    cell = evaluate_cells(tmp_path, METRICS)[name]
    ws = loaded_workspace(store, cell)
    outcome = benchmark.pedantic(run_evaluate_cell, args=(cell, ws), rounds=ROUNDS, iterations=1)
    cost = outcome.record["cost"]
    record(benchmark, family, cost)
    assert outcome.record["status"] == "done", outcome.record.get("reason")
    assert cost["explanation"] == "computed" and cost["metrics_computed"] == len(METRICS)
    assert cost["n_clips"] == 8
    assert (cost["explainer_forward"] > 0) == (name != "random")  # the random map costs no detector pass


@pytest.mark.parametrize("family", list(EXPLAINERS))
@pytest.mark.benchmark(group="evaluate cell, warm (stored explanations, one metric added)", timer=TIMER)
def test_warm_cell(benchmark, family, store, tmp_path):
    name = EXPLAINERS[family][0]
    cell = evaluate_cells(tmp_path, [*METRICS, ADDED])[name]
    ws = loaded_workspace(store, cell)
    finish(store, run_evaluate_cell(evaluate_cells(tmp_path, METRICS)[name], ws))
    outcome = benchmark.pedantic(run_evaluate_cell, args=(cell, ws), rounds=ROUNDS, iterations=1)
    cost = outcome.record["cost"]
    record(benchmark, family, cost)
    assert outcome.record["status"] == "done", outcome.record.get("reason")
    assert cost["explanation"] == "stored"
    assert cost["explainer_forward"] == 0 and cost["explainer_backward"] == 0
    assert cost["metrics_computed"] == 1 and cost["metrics_reused"] == len(METRICS)
    assert {row["metric"] for row in outcome.rows} == {*METRICS, ADDED}
