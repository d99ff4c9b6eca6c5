"""Cold vs warm load of a generated split: rendering the synthetic test split of the smoke size (what a process
does when the store has no copy) against loading the tensors `benchmark.data_cache` stored for it under
`--out/data/` (what every later process, and every run after `data synth --store`, does).

Run with `pytest tests/benchmarks/test_data_load.py --benchmark-only --benchmark-enable`; compare the two means,
or `extra_info["clips_per_s"]` (`extra_info["clips"]` is the split's size). The warm rounds read a file the
operating system has cached in memory: they time unpacking, not the disk.
"""
from __future__ import annotations

import pytest

from benchmark.data_cache import cache_relpath, cached_table
from benchmark.dataset import load_table
from benchmark.registry import registry
from benchmark.store import Store
from benchmark.suites import PluginConfig

CONFIG = PluginConfig("dataset", "synthetic-machines", {"size": "smoke", "seed": 0})


@pytest.mark.parametrize("warm", [False, True], ids=["cold-render", "warm-cache"])
def test_test_split_load(benchmark, tmp_path, warm):
    dataset = registry("dataset").make(CONFIG.name, **CONFIG.params)
    store = Store(tmp_path)
    if warm:
        cached_table(store, CONFIG, dataset, "test")  # a process before this one rendered and stored it
        assert (tmp_path / cache_relpath(CONFIG, "test")).is_file()
        table = benchmark.pedantic(cached_table, args=(store, CONFIG, dataset, "test"), rounds=3, iterations=1)
    else:
        table = benchmark.pedantic(load_table, args=(dataset, "test"), rounds=3, iterations=1)
    benchmark.extra_info.update(clips=len(table), clips_per_s=len(table) / benchmark.stats.stats.mean)
    assert len(table) > 0
