import os

import pytest

from benchmark.store import Store, atomic_write_bytes, rows_frame


def test_atomic_write_leaves_old_content_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "a" / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]  # no temporary file left behind


def test_cell_is_finished_only_once_its_record_exists(tmp_path):
    store = Store(tmp_path)
    assert not store.is_done("k")
    row = {"dataset": "d", "machine": "m", "section": "00", "domain": "source", "clip_id": "c", "label": 1,
           "detector": "x", "detector_seed": 0, "explainer": "e", "metric": "ff", "param": "90", "value": 0.5,
           "chance": float("nan")}
    store.finish("k", {"status": "done", "label": "cell"}, [row])
    assert store.is_done("k")
    back = store.rows(["k", "missing"])
    assert back.to_dict("records")[0]["value"] == 0.5 and len(back) == 1
    store.finish("f", {"status": "failed", "label": "cell", "reason": "x"})
    assert not store.is_done("f") and store.status("f")["reason"] == "x"


def test_rows_frame_has_the_long_format_columns():
    df = rows_frame([])
    assert list(df.columns) == ["dataset", "machine", "section", "domain", "clip_id", "label", "detector",
                                "detector_seed", "explainer", "metric", "param", "value", "chance"]
