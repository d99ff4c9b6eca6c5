"""Cold vs warm load of a generated split: rendering the synthetic test split of the smoke size against loading the
tensors `benchmark.data_cache` stored for it under `--out/data/`.

Run with `pytest tests/benchmarks/test_data_load.py --benchmark-only --benchmark-enable`; compare the two means
(`extra_info["clips"]` is the split's size).
"""
from __future__ import annotations

import pytest

from benchmark.data_cache import cached_table
from benchmark.dataset import load_table
from benchmark.registry import registry
from benchmark.store import Store
from benchmark.suites import PluginConfig

CONFIG = PluginConfig("dataset", "synthetic-machines", {"size": "smoke", "seed": 0})


@pytest.mark.parametrize("warm", [False, True], ids=["cold-render", "warm-cache"])
def test_test_split_load(benchmark, tmp_path, warm):
    dataset = registry("dataset").make(CONFIG.name, **CONFIG.params)
    store = Store(tmp_path)
    cached_table(store, CONFIG, dataset, "test")  # fills the cache for the warm case
    if warm:
        table = benchmark.pedantic(cached_table, args=(store, CONFIG, dataset, "test"), rounds=3, iterations=1)
    else:
        table = benchmark.pedantic(load_table, args=(dataset, "test"), rounds=3, iterations=1)
    benchmark.extra_info["clips"] = len(table)
    assert len(table) > 0
