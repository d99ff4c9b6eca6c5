"""A corpus of deliberately broken inputs: each yields its own one-line DataError naming the file and the
problem (exit code 2 from the CLI), and nothing is half-written. The corpus is made in tmp_path from the
tiny synthetic sets written to disk (see conftest), one breakage per case."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmark.cli import main
from benchmark.data_commands import check
from benchmark.errors import DataError

TRAIN = "dev_data/fan/train/section_00_source_train_normal_0003.wav"
TEST_ANOMALY = "dev_data/fan/test/section_00_source_test_anomaly_0001.wav"
TRUTH = "ground_truth/fan/section_00_source_test_anomaly_0001.npz"


def _float_wav(path: Path, data: np.ndarray, rate: int = 16000) -> None:
    sf.write(str(path), data.astype(np.float32), rate, subtype="FLOAT")


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


def _annotations(root: Path, edit: Callable[[list[str]], list[str]]) -> Path:
    path = root / "annotations.csv"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    return path


def _second_row(lines: list[str], replace: Callable[[list[str]], list[str]]) -> list[str]:
    return [lines[0], ",".join(replace(lines[1].split(","))), *lines[2:]]


# each case breaks a copy of a tiny set and returns (the file the error must name, what it must say)
def corrupt_wav(root):
    path = root / TRAIN
    path.write_bytes(b"RIFFjunk")
    return path, "cannot read audio"


def empty_file(root):
    path = root / TEST_ANOMALY
    path.write_bytes(b"")
    return path, "cannot read audio"


def zero_samples(root):
    path = root / TRAIN
    _float_wav(path, np.zeros(0))
    return path, "empty audio (0 samples)"


def nan_audio(root):
    path = root / TRAIN
    _float_wav(path, np.where(np.arange(64000) == 999, np.nan, 0.01))
    return path, "NaN or Inf"


def inf_audio(root):
    path = root / TEST_ANOMALY
    _float_wav(path, np.where(np.arange(64000) == 5, np.inf, 0.01))
    return path, "NaN or Inf"


def silent_audio(root):
    path = root / TRAIN
    _float_wav(path, np.zeros(64000))
    return path, "silent (all samples are zero)"


def shorter_than_a_frame(root):
    path = root / TRAIN
    _float_wav(path, np.full(300, 0.01))
    return path, "shorter than one frame (300 samples"


def unknown_file_name(root):
    path = root / "dev_data/fan/train/recording_7.wav"
    shutil.copy(root / TRAIN, path)
    return path, "name follows no DCASE layout"


def anomaly_in_training(root):
    path = root / "dev_data/fan/train/section_00_source_train_anomaly_0000.wav"
    shutil.copy(root / TRAIN, path)
    return path, "anomalous clip in a training folder"


def unknown_machine_layout(root):
    path = root / "dev_data/valve"
    (path / "recordings").mkdir(parents=True)
    return path, "unknown layout, no train/ or test/"


def no_dev_data(root):
    shutil.rmtree(root / "dev_data")
    return root, "has no dev_data/ (unknown layout)"


def corrupt_truth(root):
    path = root / TRUTH
    path.write_bytes(b"PK\x03\x04 not a zip")
    return path, "cannot read ground truth"


def truth_outside_clip(root):
    path = root / TRUTH
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["events"][0, 1] = 7.5
    np.savez(path, **arrays)
    return path, "is outside the clip [0, 4) s"


def truth_wrong_grid(root):
    path = root / TRUTH
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["tf_mask"] = arrays["tf_mask"][:64]
    np.savez(path, **arrays)
    return path, "tf_mask has shape [64, 126], expected [128, T]"


def truth_missing(root):
    path = root / TRUTH
    path.unlink()
    return path, "ground truth missing for 1 labelled test clips"


def corrupt_tensor(root):
    path = _first(root, "training/*/*.pt")
    path.write_bytes(b"\x80\x02junk")
    return path, "cannot read tensor"


def wrong_tensor_shape(root):
    path = _first(root, "evaluation/normal/*.pt")
    torch.save(torch.randn(64, 161), path)
    return path, "tensor has shape [64, 161], expected [80, T]"


def tensor_not_a_tensor(root):
    path = _first(root, "evaluation/normal/*.pt")
    torch.save({"mel": [1, 2, 3]}, path)
    return path, "holds a dict, not a log-mel tensor"


def nan_features(root):
    path = _first(root, "training/*/*.pt")
    x = torch.load(path, weights_only=True)
    x[3, 7] = float("nan")
    torch.save(x, path)
    return path, "features contain NaN or Inf"


def constant_features(root):
    path = _first(root, "evaluation/anomalies/*/*.pt")
    torch.save(torch.full((80, 161), -10.0), path)
    return path, "features are constant (silent recording)"


def empty_features(root):
    path = _first(root, "training/*/*.pt")
    torch.save(torch.zeros(80, 0), path)
    return path, "shorter than one frame (0 frames)"


def annotation_outside_clip(root):
    path = _annotations(root, lambda lines: _second_row(lines, lambda r: [*r[:4], "12"]))
    return path, "is outside the clip [0, 4) s"


def annotation_not_a_number(root):
    path = _annotations(root, lambda lines: _second_row(lines, lambda r: [*r[:3], "two", r[4]]))
    return path, "malformed annotation (chunk must be an integer, onset_s and offset_s numbers"


def annotation_reversed(root):
    path = _annotations(root, lambda lines: _second_row(lines, lambda r: [*r[:3], r[4], r[3]]))
    return path, "malformed annotation"


def annotation_ragged_row(root):
    path = _annotations(root, lambda lines: [*lines, "planer_24-06-01_0800_m1,1,board_stuck,2"])
    return path, "malformed row (wrong number of fields)"


def annotation_missing_column(root):
    path = _annotations(root, lambda lines: [line.rsplit(",", 1)[0] for line in lines])
    return path, "missing column(s) offset_s"


def annotation_unknown_file(root):
    path = _annotations(root, lambda lines: _second_row(lines, lambda r: ["planer_99-01-01_0000_m1", *r[1:]]))
    return path, "which is not under evaluation/"


def planer_unknown_layout(root):
    shutil.rmtree(root / "training")
    shutil.rmtree(root / "evaluation")
    (root / "clips").mkdir()
    return root, "has neither training/ nor evaluation/ (unknown layout)"


def planer_loose_file(root):
    path = root / "training" / "stray.pt"
    shutil.copy(_first(root, "training/*/*.pt"), path)
    return path, "unknown layout, clips belong in a subfolder"


DCASE_CASES = [corrupt_wav, empty_file, zero_samples, nan_audio, inf_audio, silent_audio, shorter_than_a_frame,
               unknown_file_name, anomaly_in_training, unknown_machine_layout, no_dev_data, corrupt_truth,
               truth_outside_clip, truth_wrong_grid, truth_missing]
PLANER_CASES = [corrupt_tensor, wrong_tensor_shape, tensor_not_a_tensor, nan_features, constant_features,
                empty_features, annotation_outside_clip, annotation_not_a_number, annotation_reversed,
                annotation_ragged_row, annotation_missing_column, annotation_unknown_file, planer_unknown_layout,
                planer_loose_file]


def _broken_copy(source: Path, tmp_path: Path, case) -> tuple[Path, Path, str]:
    root = tmp_path / "data"
    shutil.copytree(source, root)
    path, problem = case(root)
    return root, path, problem


def _expect(dataset: str, root: Path, path: Path, problem: str) -> None:
    with pytest.raises(DataError) as caught:
        check(dataset, str(root))
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    assert str(path) in message and problem in message, message


@pytest.mark.parametrize("case", DCASE_CASES, ids=lambda c: c.__name__)
def test_broken_dcase_input(case, tiny_machines_on_disk, tmp_path):
    _expect("dcase", *_broken_copy(tiny_machines_on_disk, tmp_path, case))


@pytest.mark.parametrize("case", PLANER_CASES, ids=lambda c: c.__name__)
def test_broken_planer_input(case, tiny_planer_on_disk, tmp_path):
    _expect("woodplaner", *_broken_copy(tiny_planer_on_disk, tmp_path, case))


def test_missing_root_says_how_to_point_at_the_data(tmp_path):
    for dataset in ("dcase", "woodplaner"):
        with pytest.raises(DataError, match="does not exist: .*point --data-root at the folder"):
            check(dataset, str(tmp_path / "nowhere"))


def test_cli_exits_2_with_one_line(tiny_machines_on_disk, tmp_path, capsys):
    root, path, _ = _broken_copy(tiny_machines_on_disk, tmp_path, corrupt_wav)
    assert main(["data", "check", "--dataset", "dcase", "--data-root", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: ") and path.name in captured.err
    assert main(["data", "check", "--dataset", "synthetic-machines", "--data-root", str(root)]) == 2
    assert "is generated, not read from disk" in capsys.readouterr().err


def test_unknown_annotation_column_names_and_good_data_pass(tiny_planer_on_disk, tmp_path):
    # the intact copy passes; a CSV in the root without file/chunk columns is not taken for annotations
    root = tmp_path / "ok"
    shutil.copytree(tiny_planer_on_disk, root)
    (root / "notes.csv").write_text("who,what\nme,listened\n")
    assert "20 clips read and valid" in check("woodplaner", str(root))
    (root / "annotations.csv").rename(root / "labels.csv")
    assert check("woodplaner", str(root)).splitlines()[1].startswith("ground truth: intervals, tf_mask;")
