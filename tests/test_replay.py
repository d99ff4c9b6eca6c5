"""Replaying a complete run copies its published folder; any change that shapes results falls through."""
import json
from argparse import Namespace

from benchmark import replay
from benchmark.integrity import digest_file, folder_digests


def args(tmp_path, **kw):
    base = dict(datasets=None, detectors=None, explainers=None, seeds=None, data_root=None, device="auto",
                out=tmp_path / "runs", leaderboards=tmp_path / "lb")
    return Namespace(**{**base, **kw})


def fake_run(tmp_path, status="done"):
    out = tmp_path / "runs"
    (out / "suites").mkdir(parents=True)
    (out / "suites" / "s.json").write_text(json.dumps({"train": ["a"], "evaluate": ["b"]}))
    for key in ("a", "b"):
        (out / "cells" / key).mkdir(parents=True)
        (out / "cells" / key / "rows.parquet").write_bytes(b"rows of " + key.encode())
        files = {f"cells/{key}/rows.parquet": digest_file(out / "cells" / key / "rows.parquet")}
        (out / "cells" / key / "cell.json").write_text(json.dumps({"status": status, "files": files}))
    published = tmp_path / "published-src"
    published.mkdir()
    (published / "leaderboard.csv").write_text("x\n1\n")
    (published / "manifest.json").write_text(json.dumps({"files": folder_digests(published, skip=("manifest.json",))}))
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\n')
    return suite, published


def test_replay_copies_the_remembered_folder(tmp_path):
    suite, published = fake_run(tmp_path)
    a = args(tmp_path)
    assert replay.try_replay(a, "s", suite) is None
    replay.remember(a, "s", suite, published)
    target = replay.try_replay(a, "s", suite)
    assert target == tmp_path / "lb" / "s" and (target / "leaderboard.csv").read_text() == "x\n1\n"


def test_filters_suite_edits_and_unfinished_cells_fall_through(tmp_path):
    suite, published = fake_run(tmp_path)
    replay.remember(args(tmp_path), "s", suite, published)
    assert replay.try_replay(args(tmp_path, detectors=["ae"]), "s", suite) is None
    suite.write_text('name = "s"\nseeds = [1]\n')
    assert replay.try_replay(args(tmp_path), "s", suite) is None
    suite.write_text('name = "s"\n')
    (tmp_path / "runs" / "cells" / "b" / "cell.json").write_text(json.dumps({"status": "failed"}))
    assert replay.try_replay(args(tmp_path), "s", suite) is None


def test_source_edits_change_the_key(tmp_path, monkeypatch):
    suite, _ = fake_run(tmp_path)
    root = tmp_path / "src"
    (root / "adapters").mkdir(parents=True)
    (root / "benchmark").mkdir()
    (root / "adapters" / "x.py").write_text("A = 1\n")
    monkeypatch.setattr(replay, "ROOT", root)
    before = replay.replay_key(args(tmp_path), suite)
    (root / "adapters" / "x.py").write_text("A = 2\n")
    assert replay.replay_key(args(tmp_path), suite) != before
