"""`--executor dask`: the same tables as the local executor, and a worker killed mid-cell loses that cell only."""
import pandas as pd
import pytest
import torch

pytest.importorskip("distributed")

from benchmark.dask_executor import DaskExecutor  # noqa: E402
from benchmark.errors import BenchmarkError  # noqa: E402
from benchmark.executors import make_executor  # noqa: E402
from tests.engine_plugins import run_suite_text  # noqa: E402

SUITE = """
name = "t"
seeds = [0, 1]
metrics = ["test-band-mass", "relevance_mass_accuracy", "pixel_auroc"]
[evaluate]
max_clips = 4
batch_size = 2
[datasets.test-blobs]
[detectors.test-template]
[explainers.error_map]
[explainers.saliency]
[explainers.random]
"""


@pytest.fixture(scope="module")
def cluster():
    threads = torch.get_num_threads()
    executor = DaskExecutor(workers=2, threads=1)
    torch.set_num_threads(1)  # the local runs at the workers' thread count: the same rounding
    yield executor
    torch.set_num_threads(threads)
    executor.close()


def test_dask_tables_equal_the_local_executors_byte_for_byte(tmp_path, cluster):
    local, local_folder, _ = run_suite_text(tmp_path, SUITE, "local")
    dask, dask_folder, _ = run_suite_text(tmp_path, SUITE, "dask", executor=cluster)
    assert local.failed == dask.failed == [] and local.done == dask.done == 2 + 6
    for name in ("leaderboard.csv", "detectors.csv", "localisation.csv"):
        assert (local_folder / name).read_bytes() == (dask_folder / name).read_bytes(), name
    lb = pd.read_csv(dask_folder / "leaderboard.csv")
    assert set(lb.explainer) == {"error_map", "saliency", "random"} and lb["relevance_mass_accuracy.mean"].notna().all()


def test_workers_run_with_the_allocators_defaults(cluster):
    """No glibc malloc tunable in a worker's environment: one (Dask sets MALLOC_TRIM_THRESHOLD_) fixes the mmap
    threshold at 128 KiB, and every tensor above it is mapped and unmapped again (cells took 1.3-1.8x the CPU)."""
    import os
    seen = cluster.client.run(lambda: {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")})
    assert len(seen) == 2 and all(env == {} for env in seen.values()), seen


def test_a_killed_worker_loses_only_its_cell_which_is_retried_once(tmp_path, cluster):
    once = tmp_path / "died-once"
    text = SUITE.replace("[explainers.random]", f"[explainers.random]\n[explainers.test-kills-worker]\nonce = '{once}'")
    summary, folder, _ = run_suite_text(tmp_path, text, "once", executor=cluster)
    assert once.exists() and summary.failed == []  # one worker died; the retry on another finished the cell
    assert summary.done == 2 + 8
    text = SUITE.replace("[explainers.random]", "[explainers.random]\n[explainers.test-kills-worker]")
    summary, folder, _ = run_suite_text(tmp_path, text, "always", executor=cluster)
    assert len(summary.failed) == 2 and all("test-kills-worker" in f and "KilledWorker" in f for f in summary.failed)
    assert summary.done == 2 + 6  # every other cell of the suite finished
    lb = pd.read_csv(folder / "leaderboard.csv")
    assert lb.set_index("explainer").loc["error_map", "relevance_mass_accuracy.mean"] > 0.5


def test_a_trained_detector_is_evaluated_while_another_still_trains(tmp_path, cluster):
    """No barrier between training and evaluation: an evaluate cell is submitted once its own train cell is
    recorded, so the fast detector's cells finish on one worker while the slow detector trains on the other."""
    order: list[str] = []

    class Watched:
        remote = True

        def run(self, cells, ws, **kw):
            for outcome in cluster.run(cells, ws, **kw):
                order.append(outcome.record["label"])
                yield outcome

    text = SUITE.replace("seeds = [0, 1]", "seeds = [0]").replace(
        "[detectors.test-template]", "[detectors.test-template]\n[detectors.test-scorer]\nfit_s = 8.0")
    summary, folder, _ = run_suite_text(tmp_path, text, "pipelined", executor=Watched())
    assert summary.failed == [] and summary.done == 2 + 5 and len(summary.skipped) == 1  # scorer has no error map
    slow = order.index("train test-blobs / test-scorer / seed 0")
    fast = [i for i, label in enumerate(order) if label.startswith("evaluate test-blobs / test-template /")]
    assert len(fast) == 3 and max(fast) < slow, order
    assert all(i > slow for i, label in enumerate(order) if "/ test-scorer / " in label and label.startswith("eval"))


def test_the_workers_render_the_missing_splits_and_the_driver_writes_them(tmp_path, cluster):
    """A cold Dask run's data: every split not in the store is generated on the workers in parallel and written
    by the driver, byte-identical to the file a local process stores."""
    from benchmark.data_cache import cache_relpath
    from benchmark.runner import _prepare_data
    from benchmark.store import Store
    from benchmark.suites import load_suite
    from benchmark.workspace import Workspace

    path = tmp_path / "gen.toml"
    path.write_text(SUITE.replace("[datasets.test-blobs]", "[datasets.synthetic-planer]\nsize = 'tiny'"))
    suite = load_suite(str(path))
    config = suite.datasets[0]
    rendered: list = []

    class Counting:
        remote = True

        def map(self, fn, items):
            rendered.extend(items)
            yield from cluster.map(fn, items)

    pooled = Workspace(Store(tmp_path / "pool"), torch.device("cpu"))
    _prepare_data(pooled, suite, Counting())
    assert sorted(split for _, split in rendered) == ["test", "train"]
    local = Workspace(Store(tmp_path / "local"), torch.device("cpu"))
    for split in ("train", "test"):
        local.table(config, split)
        relpath = cache_relpath(config, split)
        assert (tmp_path / "pool" / relpath).read_bytes() == (tmp_path / "local" / relpath).read_bytes()
    rendered.clear()
    _prepare_data(pooled, suite, Counting())  # stored already: nothing rendered again
    assert rendered == []


def test_executor_options_are_checked():
    with pytest.raises(BenchmarkError, match="options of --executor dask"):
        make_executor("local", workers=2)
    with pytest.raises(BenchmarkError, match="--workers 0"):
        make_executor("dask", workers=0)


def test_a_cuda_run_places_cells_on_workers_holding_a_gpu(tmp_path, capsys):
    from distributed import LocalCluster
    executor = DaskExecutor(workers=1, threads=1, gpu=True)
    try:  # the local cluster's workers hold the resource and every cell asks for one
        assert executor.resources == {"GPU": 1}
        workers = executor.client.scheduler_info()["workers"].values()
        assert [w["resources"] for w in workers] == [{"GPU": 1}]
        summary, _, _ = run_suite_text(tmp_path, SUITE.replace("seeds = [0, 1]", "seeds = [0]"), "gpu",
                                       executor=executor)
        assert summary.failed == [] and summary.done == 1 + 3
    finally:
        executor.close()
    plain = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    try:  # an existing cluster without GPU workers yet (Slurm jobs queued): cells wait for one, and the run says so
        executor = DaskExecutor(scheduler=plain.scheduler_address, threads=1, gpu=True)
        assert executor.resources == {"GPU": 1}
        assert "no worker of the cluster advertises a GPU resource yet" in capsys.readouterr().err
        executor.close()
    finally:
        plain.close()
