"""The disk loaders: synthetic sets round-trip through `dcase` and `woodplaner`, DCASE layouts of every
year, attributes, unlabelled evaluation files, resampling and downmixing notices, `data check`."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmark import make
from benchmark.data_commands import check
from benchmark.dataset import load_table
from benchmark.features import LogMel


def _assert_same_tables(a, b, *, features_only: bool = False):
    assert a.ids == b.ids
    assert torch.equal(a.labels, b.labels) and a.meta == b.meta
    assert torch.allclose(a.x, b.x, atol=1e-5, rtol=0)
    assert torch.equal(a.tf_mask, b.tf_mask) and torch.equal(a.frame_labels, b.frame_labels)
    assert torch.equal(a.has_truth, b.has_truth)
    if not features_only:
        assert torch.equal(a.waveform, b.waveform)


# ------------------------------------------------------------------------------------------------ round trips
def test_dcase_reads_back_synthetic_machines(tiny_machines, tiny_machines_on_disk, tiny_machines_clips,
                                             tiny_machines_train, tiny_machines_test):
    ds = make("dataset", "dcase", data_root=str(tiny_machines_on_disk))
    assert ds.spec == tiny_machines.spec and ds.truth == {"intervals", "tf_mask"} and ds.has_waveforms
    for split in ("train", "test"):
        loaded = sorted(ds.clips(split), key=lambda c: c.id)
        made = sorted(tiny_machines_clips[split], key=lambda c: c.id)
        assert [c.id for c in loaded] == [c.id for c in made]
        for disk, memory in zip(loaded, made, strict=True):
            assert disk.label == memory.label and disk.meta == memory.meta and disk.events == memory.events
            assert torch.equal(disk.waveform, memory.waveform)
            if split == "test":
                assert torch.equal(disk.tf_mask, memory.tf_mask)
    for split, table in (("train", tiny_machines_train), ("test", tiny_machines_test)):
        disk = load_table(ds, split)
        rows = [disk.ids.index(i) for i in table.ids]
        _assert_same_tables(disk.batch(rows), table.batch(list(range(len(table)))))


def test_woodplaner_reads_back_synthetic_planer(tiny_planer, tiny_planer_on_disk, tiny_planer_clips,
                                                tiny_planer_train, tiny_planer_test):
    ds = make("dataset", "woodplaner", data_root=str(tiny_planer_on_disk))
    assert ds.spec == tiny_planer.spec and ds.truth == {"intervals", "tf_mask"} and not ds.has_waveforms
    logmel = LogMel(tiny_planer.spec)
    for split in ("train", "test"):
        loaded = {c.id: c for c in ds.clips(split)}
        assert set(loaded) == {c.id for c in tiny_planer_clips[split]}
        for memory in tiny_planer_clips[split]:
            disk = loaded[memory.id]
            assert disk.label == memory.label and disk.meta == memory.meta and disk.events == memory.events
            assert disk.waveform is None and disk.features.shape == (80, 161)
            with torch.no_grad():
                assert torch.equal(disk.features, logmel(memory.waveform[None])[0, 0])
            if split == "test":
                assert torch.equal(disk.tf_mask, memory.tf_mask)
    for split, table in (("train", tiny_planer_train), ("test", tiny_planer_test)):
        disk = load_table(ds, split)
        rows = [disk.ids.index(i) for i in table.ids]
        got = disk.batch(rows)
        assert got.waveform is None and got.anomaly is None
        _assert_same_tables(got, table.batch(list(range(len(table)))), features_only=True)


def test_woodplaner_frame_labels_are_half_open_at_40_fps(tiny_planer_on_disk):
    ds = make("dataset", "woodplaner", data_root=str(tiny_planer_on_disk))
    table = load_table(ds, "test")
    for row, clip_id in enumerate(table.ids):
        clip_events = next(c for c in ds.clips("test") if c.id == clip_id).events
        expected = torch.zeros(161, dtype=torch.bool)
        for ev in clip_events:
            expected[int(ev.onset_s * 40): int(ev.offset_s * 40)] = True
        assert torch.equal(table.frame_labels[row], expected)


def test_check_reports_counts_and_truth(tiny_machines_on_disk, tiny_planer_on_disk):
    report = check("dcase", str(tiny_machines_on_disk))
    lines = report.splitlines()
    assert "20 clips read and valid, grid 128x126 (16000 Hz, 4 s clips), waveforms" in lines[0]
    assert lines[1].startswith("ground truth: intervals, tf_mask; 4 clips with events")
    rows = {tuple(line.split()[:4]): line.split()[4:] for line in lines[3:]}
    assert rows[("fan", "00", "source", "train")] == ["10", "0", "0"]
    assert rows[("fan", "00", "target", "test")] == ["2", "2", "0"]
    report = check("woodplaner", str(tiny_planer_on_disk))
    assert "20 clips read and valid, grid 80x161 (20000 Hz, 4 s clips), features only" in report
    rows = {tuple(line.split()[:4]): line.split()[4:] for line in report.splitlines()[3:]}
    assert rows == {("planer", "00", "source", "test"): ["4", "4", "0"],
                    ("planer", "00", "source", "train"): ["12", "0", "0"]}


# ------------------------------------------------------------------------------------------------ DCASE layouts
def _wav(path: Path, seconds: float = 0.5, rate: int = 16000, channels: int = 1, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    sf.write(str(path), data if channels > 1 else data[:, 0], rate, subtype="PCM_16")


def test_dcase_2020_layout(tmp_path):
    root = tmp_path / "d2020"
    _wav(root / "dev_data/ToyCar/train/normal_id_01_00000000.wav")
    _wav(root / "dev_data/ToyCar/test/normal_id_01_00000000.wav")
    _wav(root / "dev_data/ToyCar/test/anomaly_id_03_00000007.wav")
    ds = make("dataset", "dcase", data_root=str(root))
    assert ds.spec.duration_s == 0.5 and ds.truth == frozenset()
    test = list(ds.clips("test"))
    assert [(c.id, c.label, c.meta["section"], c.meta["domain"]) for c in test] == [
        ("ToyCar/anomaly_id_03_00000007", 1, "03", "source"), ("ToyCar/normal_id_01_00000000", 0, "01", "source")]
    assert [c.id for c in ds.clips("train")] == ["ToyCar/normal_id_01_00000000"]


def test_dcase_2021_layout_and_eval(tmp_path, capsys):
    root = tmp_path / "d2021"
    _wav(root / "dev_data/gearbox/train/section_00_source_train_normal_0000.wav")
    _wav(root / "dev_data/gearbox/train/section_00_target_train_normal_0000.wav")
    _wav(root / "dev_data/gearbox/source_test/section_00_source_test_anomaly_0000.wav")
    _wav(root / "dev_data/gearbox/target_test/section_00_target_test_normal_0000.wav")
    _wav(root / "eval_data/gearbox/source_test/section_03_source_test_0000.wav")
    _wav(root / "eval_data/gearbox/target_test/section_04_test_0001.wav")
    ds = make("dataset", "dcase", data_root=str(root), part="all")
    assert "2 evaluation files" in capsys.readouterr().err
    test = {c.id: c for c in ds.clips("test")}
    assert set(test) == {"gearbox/section_00_source_test_anomaly_0000", "gearbox/section_00_target_test_normal_0000",
                         "eval/gearbox/section_03_source_test_0000", "eval/gearbox/section_04_test_0001"}
    assert test["eval/gearbox/section_03_source_test_0000"].label is None
    assert test["eval/gearbox/section_03_source_test_0000"].meta["domain"] == "source"
    assert test["eval/gearbox/section_04_test_0001"].meta["domain"] == "unknown"
    assert test["gearbox/section_00_target_test_normal_0000"].meta["domain"] == "target"
    dev_only = make("dataset", "dcase", data_root=str(root))
    assert len(list(dev_only.clips("test"))) == 2
    assert load_table(ds, "test").labels.tolist().count(-1) == 2


def test_dcase_2023_attributes_from_names_and_csv(tmp_path):
    root = tmp_path / "d2023"
    machine = root / "dev_data" / "bearing"
    _wav(machine / "train/section_00_source_train_normal_0000_vel_6_loc_A.wav")
    _wav(machine / "test/section_00_source_test_anomaly_0000_vel_6_loc_B.wav")
    _wav(machine / "test/section_00_target_test_normal_0000_noAttributes.wav")
    with (machine / "attributes_00.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["file_name", "d1p", "d1v", "d2p", "d2v"])
        out.writerow(["bearing/test/section_00_target_test_normal_0000_noAttributes.wav", "mic", "2", "", ""])
    ds = make("dataset", "dcase", data_root=str(root), machines=["bearing"])
    train = list(ds.clips("train"))
    assert train[0].meta["attributes"] == {"vel": "6", "loc": "A"}
    test = {c.id: c for c in ds.clips("test")}
    assert test["bearing/section_00_source_test_anomaly_0000_vel_6_loc_B"].meta["attributes"] == {"vel": "6",
                                                                                                  "loc": "B"}
    assert test["bearing/section_00_target_test_normal_0000_noAttributes"].meta["attributes"] == {
        "attrs": "noAttributes", "mic": "2"}


def test_dcase_duration_is_the_common_length(tmp_path):
    root = tmp_path / "mixed"
    for i, seconds in enumerate((1.0, 1.0, 2.0)):
        _wav(root / f"dev_data/fan/train/section_00_source_train_normal_{i:04d}.wav", seconds=seconds)
    assert make("dataset", "dcase", data_root=str(root)).spec.duration_s == 1.0
    assert make("dataset", "dcase", data_root=str(root), duration_s=2.0).spec.n_frames == 63


# ------------------------------------------------------------------------------------------------ conversions
def test_resampling_and_downmixing_with_one_notice_each(tmp_path, capsys):
    root = tmp_path / "convert"
    _wav(root / "dev_data/fan/train/section_00_source_train_normal_0000.wav", seconds=1.0, rate=8000)
    _wav(root / "dev_data/fan/train/section_00_source_train_normal_0001.wav", seconds=1.0, rate=8000, seed=1)
    _wav(root / "dev_data/fan/train/section_00_source_train_normal_0002.wav", seconds=1.0, channels=2)
    ds = make("dataset", "dcase", data_root=str(root))
    clips = list(ds.clips("train"))
    err = capsys.readouterr().err.splitlines()
    assert sum("8000 Hz resampled to 16000 Hz" in line for line in err) == 1
    assert sum("2 channels downmixed to mono" in line for line in err) == 1
    assert all(line.startswith("notice: ") for line in err)
    assert [c.waveform.shape[0] for c in clips] == [16000, 16000, 16000]
    stereo, _ = sf.read(str(root / "dev_data/fan/train/section_00_source_train_normal_0002.wav"), dtype="float32")
    assert torch.allclose(clips[2].waveform, torch.from_numpy(stereo.mean(axis=1)))


def test_woodplaner_reads_wav_clips(tmp_path):
    root = tmp_path / "planer_wav"
    _wav(root / "training/2x4/planer_24-01-01_0800_m1_1.wav", seconds=10.0, rate=20000)
    _wav(root / "evaluation/normal/planer_24-02-01_0800_m1_1.wav", seconds=10.0, rate=20000, seed=1)
    _wav(root / "evaluation/anomalies/board_stuck/planer_24-03-01_0800_m1_2.wav", seconds=10.0, rate=20000, seed=2)
    (root / "annotations.csv").write_text("file,chunk,kind,onset_s,offset_s\n"
                                          "planer_24-03-01_0800_m1,2,board_stuck,3,5\n"
                                          "planer_24-03-01_0800_m1,2,board_stuck,7,8\n")
    ds = make("dataset", "woodplaner", data_root=str(root))
    assert ds.has_waveforms and ds.truth == {"intervals"} and ds.spec.grid == (80, 401)
    (anomalous,) = [c for c in ds.clips("test") if c.label == 1]
    assert anomalous.features is None and anomalous.waveform.shape == (200000,)
    assert anomalous.intervals == [(3.0, 5.0), (7.0, 8.0)] and anomalous.events[0].kind == "board_stuck"
    table = load_table(ds, "test")
    row = table.ids.index(anomalous.id)
    assert table.frame_labels[row].nonzero().flatten().tolist() == list(range(120, 200)) + list(range(280, 320))
