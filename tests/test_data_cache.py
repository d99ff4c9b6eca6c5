"""Generated data stacked once, across processes and commands: `data synth --store RUNS` writes the split files a
later `run --out RUNS` loads instead of rendering, under the key the run computes from its suite."""
from __future__ import annotations

import pytest
import torch

import benchmark.data_cache as data_cache
from adapters.datasets._synthesis import SyntheticDataset
from benchmark.cli import main
from benchmark.data_commands import synth
from benchmark.dataset import SPLITS, ClipTable, load_table
from benchmark.errors import DataError
from benchmark.registry import registry
from benchmark.store import Store, read_checkpoint
from benchmark.suites import PluginConfig, load_suite
from benchmark.workspace import Workspace

NAME = "synthetic-machines"
RENDER = SyntheticDataset.render  # the generator itself, for the tests that wrap it
SUITE = """
name = "t"
seeds = [0]
metrics = ["ff"]
[datasets.synthetic-machines]
size = "tiny"
SEED
[detectors.dense_ae]
[explainers.random]
"""


def config(**params) -> PluginConfig:
    return PluginConfig("dataset", NAME, params)


def suite_dataset(tmp_path, seed_line: str) -> PluginConfig:
    path = tmp_path / f"suite{len(seed_line)}.toml"
    path.write_text(SUITE.replace("SEED", seed_line))
    return load_suite(str(path)).datasets[0]


def assert_same(a: ClipTable, b: ClipTable) -> None:
    assert a.ids == b.ids and a.meta == b.meta
    for name in data_cache.TENSORS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or (x.dtype == y.dtype and torch.equal(x, y)), name


def no_rendering(*args, **kwargs):
    raise AssertionError("a clip was rendered")


def stored_files(root) -> list[str]:
    """Every file under `<root>/data`, temporary ones included."""
    return sorted(p.name for p in (root / "data").iterdir()) if (root / "data").is_dir() else []


@pytest.fixture(scope="module")
def fresh() -> dict[str, ClipTable]:
    """Both splits of the tiny dataset, rendered here."""
    dataset = registry("dataset").make(NAME, size="tiny")
    return {split: load_table(dataset, split) for split in SPLITS}


def test_a_run_loads_what_data_synth_stored(tmp_path, monkeypatch, capsys, fresh):
    runs = tmp_path / "runs"
    assert main(["data", "synth", NAME, "--size", "tiny", "--store", str(runs)]) == 0
    said = capsys.readouterr().out
    assert f"12 train and 8 test clips into {runs / 'data'}" in said and 'seed = 0, size = "tiny"' in said
    assert len(stored_files(runs)) == 2
    monkeypatch.setattr(SyntheticDataset, "render", no_rendering)
    # a suite that leaves the seed at its default and one that states it load the same files
    for seed_line in ("", "seed = 0"):
        ws = Workspace(store=Store(runs), device=torch.device("cpu"))
        for split in SPLITS:
            assert_same(ws.table(suite_dataset(tmp_path, seed_line), split), fresh[split])
    assert len(stored_files(runs)) == 2


def test_a_split_already_stored_is_read_back(tmp_path, monkeypatch, fresh):
    runs = tmp_path / "runs"
    dataset = registry("dataset").make(NAME, size="tiny")
    data_cache.cached_table(Store(runs), config(size="tiny"), dataset, "train")  # a run stored the train split
    renders = []

    def recorded(self, plan):
        renders.append(plan.split)
        return RENDER(self, plan)

    monkeypatch.setattr(SyntheticDataset, "render", recorded)
    said = synth(NAME, None, seed=0, layout=None, store=runs, size="tiny")
    assert "the train split was there already" in said
    assert set(renders) == {"test"}  # only the missing split was rendered
    for split in SPLITS:
        assert_same(data_cache._unpack(read_checkpoint(runs / data_cache.cache_relpath(config(size="tiny"), split),
                                                       "cpu")), fresh[split])


def test_the_key_is_the_resolved_parameters():
    key = data_cache.cache_key(config(size="tiny"), "test")
    assert data_cache.cache_key(config(size="tiny", seed=0), "test") == key  # the default, stated
    assert data_cache.cache_key(config(size="tiny", seed=0, difficulty=None, recipe=None), "test") == key
    assert data_cache.cache_key(config(size="tiny"), "train") != key
    for other in ({"size": "tiny", "seed": 1}, {"size": "smoke"}, {"size": "tiny", "difficulty": 0.5},
                  {"size": "tiny", "test_anomaly": 3}):
        assert data_cache.cache_key(config(**other), "test") != key, other
    assert data_cache.resolved_params(config(size="tiny", test_anomaly=3)) == \
        {"seed": 0, "size": "tiny", "difficulty": None, "recipe": None, "test_anomaly": 3}
    # the quick size is the default: a suite that names no size shares the files of one that names it
    assert data_cache.cache_key(config(), "test") == data_cache.cache_key(config(size="quick"), "test")


def test_data_synth_refuses_before_writing(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(DataError, match="give at least one"):
        synth(NAME, None, seed=0, layout=None, size="tiny")
    with pytest.raises(DataError, match="--layout dcase is the folder layout of --out"):
        synth(NAME, None, seed=0, layout="dcase", store=runs, size="tiny")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(DataError, match="already exists and is not empty"):
        synth(NAME, busy, seed=0, layout=None, store=runs, size="tiny")
    with pytest.raises(DataError, match="is read from disk and cannot be synthesised"):
        synth("dcase", None, seed=0, layout=None, store=runs)
    assert not runs.exists()
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(DataError, match=f"cannot use '{blocked}' as the results store"):
        synth(NAME, None, seed=0, layout=None, store=blocked, size="tiny")
    assert main(["data", "synth", NAME, "--size", "tiny"]) == 2


def test_a_failure_leaves_only_whole_files(tmp_path, monkeypatch, fresh):
    runs = tmp_path / "runs"

    def fails_in_test(self, plan):
        if plan.split == "test":
            raise RuntimeError("renderer died")
        return RENDER(self, plan)

    monkeypatch.setattr(SyntheticDataset, "render", fails_in_test)
    with pytest.raises(RuntimeError, match="renderer died"):
        synth(NAME, None, seed=0, layout=None, store=runs, size="tiny")
    train = data_cache.cache_relpath(config(size="tiny"), "train")
    assert stored_files(runs) == [train.removeprefix("data/")]  # no test file, no temporary file
    assert_same(data_cache._unpack(read_checkpoint(runs / train, "cpu")), fresh["train"])
