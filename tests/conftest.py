"""Session fixtures: tiny synthetic datasets (in memory, as ClipTables, and written to disk) built once.

`tiny` size: one machine type (or the planer), one section, 12 training clips, 4 normal + 4 anomalous
test clips of 4 s. Everything runs offline on a couple of CPU threads.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_machines():
    """`synthetic-machines`, size tiny, seed 0 (fan, section 00, source and target domains)."""
    from benchmark import make
    return make("dataset", "synthetic-machines", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_planer():
    """`synthetic-planer`, size tiny, seed 0."""
    from benchmark import make
    return make("dataset", "synthetic-planer", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_machines_clips(tiny_machines):
    """{split: [Clip]} of tiny_machines, rendered once."""
    return {split: list(tiny_machines.clips(split)) for split in ("train", "test")}


@pytest.fixture(scope="session")
def tiny_planer_clips(tiny_planer):
    return {split: list(tiny_planer.clips(split)) for split in ("train", "test")}


@pytest.fixture(scope="session")
def tiny_machines_train(tiny_machines):
    from benchmark.dataset import load_table
    return load_table(tiny_machines, "train")


@pytest.fixture(scope="session")
def tiny_machines_test(tiny_machines):
    from benchmark.dataset import load_table
    return load_table(tiny_machines, "test")


@pytest.fixture(scope="session")
def tiny_planer_train(tiny_planer):
    from benchmark.dataset import load_table
    return load_table(tiny_planer, "train")


@pytest.fixture(scope="session")
def tiny_planer_test(tiny_planer):
    from benchmark.dataset import load_table
    return load_table(tiny_planer, "test")


@pytest.fixture(scope="session")
def tiny_machines_on_disk(tmp_path_factory):
    """tiny_machines written by `data synth` in the DCASE layout (read-only for tests: copy to modify)."""
    from benchmark.data_commands import synth
    out = tmp_path_factory.mktemp("synth") / "machines"
    synth("synthetic-machines", out, seed=0, layout=None, size="tiny")
    return out


@pytest.fixture(scope="session")
def tiny_planer_on_disk(tmp_path_factory):
    """tiny_planer written by `data synth --layout planer` (read-only for tests: copy to modify)."""
    from benchmark.data_commands import synth
    out = tmp_path_factory.mktemp("synth") / "planer"
    synth("synthetic-planer", out, seed=0, layout="planer", size="tiny")
    return out
