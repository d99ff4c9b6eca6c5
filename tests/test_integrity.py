"""Untrusted and damaged files stay data: crafted checkpoints, names that would escape, damaged cells,
tampered published copies, concurrent runs, bad suites and full disks."""
import json
import os
import subprocess
import sys
import textwrap
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import benchmark.leaderboard as leaderboard_module
from benchmark import replay
from benchmark.errors import BenchmarkError
from benchmark.explain_one import load_checkpoint, read_clip
from benchmark.features import preset
from benchmark.integrity import check_name, remove_stale_staging
from benchmark.leaderboard import publish
from benchmark.store import DamagedFile, Store
from benchmark.suites import load_suite
from tests.engine_plugins import run_suite_text

ROOT = Path(__file__).resolve().parent.parent
SUITE = """
name = "t"
seeds = [0]
metrics = ["test-band-mass"]
[evaluate]
max_clips = 4
batch_size = 2
[datasets.test-blobs]
[detectors.test-template]
[explainers.error_map]
[explainers.random]
"""


def run(tmp_path: Path, text: str = SUITE, out: str = "runs"):
    summary, folder, _ = run_suite_text(tmp_path, text, out, leaderboards="lb")
    return summary, folder


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- crafted checkpoints ------------------------------------------------------------------------------
def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state": Evil(marker), "grid": [1, 1], "n_groups": 1}, tmp_path / "evil.pt")
    with pytest.raises(BenchmarkError, match="not a valid checkpoint.*could run code"):
        load_checkpoint(tmp_path / "evil.pt", torch.device("cpu"))
    store = Store(tmp_path / "runs")
    (tmp_path / "runs" / "checkpoints").mkdir(parents=True)
    (tmp_path / "evil.pt").rename(store.checkpoint_path("k"))
    with pytest.raises(DamagedFile):
        store.load_checkpoint("k", "cpu")
    assert not marker.exists()


def test_explain_refuses_a_crafted_checkpoint_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state": Evil(marker)}, tmp_path / "evil.pt")
    sf.write(str(tmp_path / "c.wav"), np.zeros(16000, dtype="float32"), 16000)
    out = subprocess.run([sys.executable, "-m", "benchmark", "explain", str(tmp_path / "c.wav"), "--detector",
                          "dense_ae", "--explainer", "error_map", "--checkpoint", str(tmp_path / "evil.pt"),
                          "--out", str(tmp_path / "ex")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "evil.pt" in out.stderr
    assert not marker.exists() and not (tmp_path / "ex").exists()


def test_non_finite_audio_is_named_as_the_cause(tmp_path):
    wave = np.zeros(16000, dtype="float32")
    wave[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), wave, 16000, subtype="FLOAT")
    with pytest.raises(BenchmarkError, match="non-finite samples"):
        read_clip(tmp_path / "nan.wav", preset("dcase"), 16000)


# --- names that become paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../escape", "..", ".", "", "a/b", "Smoke", ".hidden", "x" * 101, 3])
def test_names_that_could_leave_their_folder_are_refused(name):
    with pytest.raises(BenchmarkError, match="not a valid name"):
        check_name(name, "suite name")


@pytest.mark.parametrize("name", ["smoke", "synthetic-machines", "lmac_td", "v1.2"])
def test_ordinary_names_pass(name):
    assert check_name(name, "suite name") == name


def test_a_suite_named_to_escape_writes_nothing(tmp_path):
    suite = tmp_path / "esc.toml"
    suite.write_text((ROOT / "tasks/suites/smoke.toml").read_text().replace('name = "smoke"', 'name = "../../esc"'))
    deep = tmp_path / "a" / "b"
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--suite", str(suite), "--out", str(deep / "o"),
                          "--leaderboards", str(deep / "lb")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "not a valid name" in out.stderr and out.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["esc.toml"]
    with pytest.raises(BenchmarkError, match="not a valid name"):
        publish(Store(tmp_path), "..", tmp_path / "lb")


# --- damaged cells ------------------------------------------------------------------------------------------
def test_a_truncated_rows_file_is_recomputed_and_publish_says_re_run(tmp_path, capsys):
    _, folder = run(tmp_path)
    clean = (folder / "leaderboard.csv").read_bytes()
    store = Store(tmp_path / "runs")
    victim = next(k for k in store.suite_manifest("t")["evaluate"] if store.status(k)["status"] == "done")
    (store.cell_dir(victim) / "rows.parquet").write_bytes(b"")
    assert not store.is_done(victim) and "rows.parquet has 0 bytes" in store.problem(victim)
    with pytest.raises(BenchmarkError, match=r"is damaged: .*re-run `python -m benchmark run --suite t"):
        publish(store, "t", tmp_path / "lb")
    summary, folder = run(tmp_path)
    assert summary.done == 1 and "is damaged" in capsys.readouterr().err
    assert (folder / "leaderboard.csv").read_bytes() == clean


def test_a_lost_checkpoint_retrains_the_detector_and_its_dependants(tmp_path):
    _, folder = run(tmp_path)
    clean = (folder / "leaderboard.csv").read_bytes()
    store = Store(tmp_path / "runs")
    train = store.suite_manifest("t")["train"][0]
    store.checkpoint_path(train).write_bytes(b"garbage")
    summary, folder = run(tmp_path)
    assert summary.done == 3 and summary.cached == 0  # the detector and both evaluate cells on it
    assert (folder / "leaderboard.csv").read_bytes() == clean
    store.checkpoint_path(train).unlink()
    assert run(tmp_path)[0].done == 3


def test_a_failed_cell_publishes_no_stale_values(tmp_path):
    store = Store(tmp_path)
    row = {"dataset": "d", "machine": "m", "section": "00", "domain": "source", "clip_id": "c", "label": 1,
           "detector": "x", "detector_seed": 0, "explainer": "e", "metric": "ff", "param": "90", "value": 0.5,
           "chance": float("nan")}
    store.finish("k", {"status": "done", "label": "cell"}, [row])
    assert len(store.rows(["k"])) == 1
    store.finish("k", {"status": "failed", "label": "cell", "reason": "boom"})
    assert store.rows(["k"]).empty and not (store.cell_dir("k") / "rows.parquet").exists()


def test_a_plugin_calling_sys_exit_fails_only_its_cell(tmp_path):
    summary, folder = run(tmp_path, SUITE + "[explainers.test-exits]\n")
    assert summary.exit_code == 1 and len(summary.failed) == 1 and "SystemExit: 3" in summary.failed[0]
    lb = pd.read_csv(folder / "leaderboard.csv").set_index("explainer")
    assert lb.loc["error_map", "status"] == "done" and lb.loc["test-exits", "status"].startswith("failed")


# --- replay and publishing ------------------------------------------------------------------------------------
def replay_args(tmp_path):
    return Namespace(datasets=None, detectors=None, explainers=None, seeds=None, data_root=None, device="auto",
                     out=tmp_path / "runs", leaderboards=tmp_path / "lb2")


def test_a_tampered_published_copy_is_not_replayed(tmp_path, capsys):
    _, folder = run(tmp_path)
    args, suite = replay_args(tmp_path), tmp_path / "runs.toml"
    replay.remember(args, "t", suite, folder)
    assert replay.try_replay(args, "t", suite) is not None
    copy = next((tmp_path / "runs" / "published").glob("t-*"))
    with open(copy / "leaderboard.csv", "a") as fh:
        fh.write("t,test-template,forged,done,0.999999\n")
    assert replay.try_replay(args, "t", suite) is None
    assert "damaged" in capsys.readouterr().err and not copy.exists()


def test_publish_on_a_full_disk_leaves_the_old_folder_whole(tmp_path, monkeypatch):
    _, folder = run(tmp_path)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    original = leaderboard_module.write_report

    def full(folder, **kw):
        original(folder, **kw)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(leaderboard_module, "write_report", full)
    with pytest.raises(BenchmarkError, match="No space left on device.*nothing was changed"):
        publish(Store(tmp_path / "runs"), "t", tmp_path / "lb")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert [p.name for p in (tmp_path / "lb").iterdir()] == ["t"]  # no staging folder left


def test_stale_staging_folders_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".t.staging-{dead.stdout.strip()}-abc"
    live = tmp_path / f".t.staging-{os.getpid()}-abc"
    stale.mkdir()
    live.mkdir()
    assert remove_stale_staging(tmp_path) == [stale] and live.is_dir()


def test_a_second_run_on_the_same_store_waits_and_says_so(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from benchmark.integrity import store_lock
        with store_lock({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(1.5)
        """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    waiter = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from benchmark.integrity import store_lock
        with store_lock({str(tmp_path)!r}):
            print("got it")
        """)], capture_output=True, text=True, cwd=ROOT)
    holder.wait()
    assert waiter.stdout.strip() == "got it" and "waiting: pid " in waiter.stderr
    assert time.monotonic() - t0 > 0.5  # it did wait for the holder


def test_concurrent_publishes_into_one_folder_all_succeed(tmp_path):
    run(tmp_path)
    script = textwrap.dedent(f"""
        import sys
        from benchmark.integrity import store_lock
        from benchmark.leaderboard import publish
        from benchmark.store import Store
        import tests.engine_plugins
        for _ in range(3):
            with store_lock({str(tmp_path / 'runs')!r}):
                publish(Store({str(tmp_path / 'runs')!r}), "t", {str(tmp_path / 'lb3')!r})
        """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert json.loads((tmp_path / "lb3" / "t" / "manifest.json").read_text())["suite"] == "t"
    assert [p.name for p in (tmp_path / "lb3").iterdir()] == ["t"]


# --- suites checked whole before anything runs ----------------------------------------------------------------
T = "[detectors.test-template]"


@pytest.mark.parametrize("edit, message", [
    ((T, T + "\nbudget = { epochs = 2.5 }"), "epochs must be an integer"),
    ((T, T + "\nbudget = { epochs = 0 }"), "epochs must be an integer"),
    ((T, T + "\nbudget = { batch_size = 0 }"), "batch_size must be"),
    (("max_clips = 4", "max_clips = -1"), "max_clips must be an integer >= 1"),
    (("batch_size = 2", "batch_size = 0"), r"\[evaluate\] batch_size must be"),
    (("seeds = [0]", "seeds = [0, -1]"), "non-negative integers"),
    (("[datasets.test-blobs]", "[datasets.test-blobs]\nn_train = \"many\""), "parameter 'n_train' takes an integer"),
])
def test_suites_out_of_range_are_rejected(tmp_path, edit, message):
    path = tmp_path / "t.toml"
    path.write_text(SUITE.replace(*edit))
    with pytest.raises(BenchmarkError, match=message):
        load_suite(str(path))


def test_repeated_seeds_count_once(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(SUITE.replace("seeds = [0]", "seeds = [0, 0, 1, 0]"))
    assert load_suite(str(path)).seeds == (0, 1)


def test_cli_rejects_unknown_sizes_and_empty_seed_lists_before_writing(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text((ROOT / "tasks/suites/smoke.toml").read_text().replace('size = "smoke"', 'size = "gigantic"'))
    base = [sys.executable, "-m", "benchmark", "run", "--out", str(tmp_path / "o"), "--leaderboards",
            str(tmp_path / "lb")]
    out = subprocess.run(base + ["--suite", str(suite)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "has no size 'gigantic'" in out.stderr and out.stderr.count("\n") == 1
    out = subprocess.run(base + ["--suite", "smoke", "--seeds", ""], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--seeds" in out.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "lb").exists()
