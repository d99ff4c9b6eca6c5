"""The synthetic generators: plans, determinism, exact ground truth, difficulty, recipes, `data synth`."""
from __future__ import annotations

import hashlib
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from benchmark import make
from benchmark.data_commands import synth
from benchmark.errors import BenchmarkError, DataError
from benchmark.features import power_mel, preset

DCASE_NAME = re.compile(r"section_(\d\d)_(source|target)_(train|test)_(normal|anomaly)_(\d{4})")
SIX_FAMILIES = {"tonal_whine", "impulsive_knocks", "friction_burst", "speed_shift", "dropout", "modulation_change"}
PLANER_KINDS = {"board_stuck", "broken_board", "uneven_thick_wood"}


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------ plans
def test_tiny_machines_plan(tiny_machines, tiny_machines_clips):
    assert tiny_machines.spec == preset("dcase").with_duration(4.0)
    assert tiny_machines.spec.grid == (128, 126)
    assert tiny_machines.truth == {"intervals", "tf_mask", "audio"} and tiny_machines.has_waveforms
    train, test = tiny_machines_clips["train"], tiny_machines_clips["test"]
    assert len(train) == 12 and sum(c.meta["domain"] == "target" for c in train) == 2
    assert [c.label for c in train] == [0] * 12
    assert sorted(c.label for c in test) == [0, 0, 0, 0, 1, 1, 1, 1]
    ids = [c.id for c in train + test]
    assert len(set(ids)) == len(ids)
    for clip in train + test:
        machine, stem = clip.id.split("/")
        found = DCASE_NAME.fullmatch(stem)
        assert machine == "fan" and found, clip.id
        assert found.group(3) == clip.split and (found.group(4) == "anomaly") == (clip.label == 1)
        domain = tiny_machines.recipe["domains"][found.group(2)]
        assert clip.meta == {"machine": "fan", "section": "00", "domain": found.group(2),
                             "attributes": {"speed": f"{domain['speed']:.2f}", "noise": domain["background"]}}
        assert clip.waveform.dtype == torch.float32 and clip.waveform.shape == (64000,)


def test_tiny_planer_plan(tiny_planer, tiny_planer_clips):
    assert tiny_planer.spec.grid == (80, 161) and tiny_planer.spec.sample_rate == 20000
    train, test = tiny_planer_clips["train"], tiny_planer_clips["test"]
    assert len(train) == 12 and len(test) == 8
    groups = {c.meta["attributes"]["group"] for c in train}
    assert groups <= {"2x3", "2x4", "2x6", "machine_start_stop"} and len(groups) >= 3
    assert all(c.id.startswith(f"training/{c.meta['attributes']['group']}/planer_") for c in train)
    normal = [c for c in test if c.label == 0]
    anomalous = [c for c in test if c.label == 1]
    assert len(normal) == 4 and all(c.id.startswith("evaluation/normal/") and c.meta["attributes"] == {}
                                    for c in normal)
    assert {c.meta["attributes"]["kind"] for c in anomalous} == PLANER_KINDS
    assert all(c.id == f"evaluation/anomalies/{c.meta['attributes']['kind']}/{c.id.rsplit('/', 1)[1]}"
               for c in anomalous)
    # release-style names: planer_YY-MM-DD_HHMM_m1_<chunk>, chunk 1..6
    assert all(re.fullmatch(r"planer_24-\d\d-\d\d_\d{4}_m1_[1-6]", c.id.rsplit("/", 1)[1]) for c in train + test)


# ------------------------------------------------------------------------------------------------ determinism
def test_same_seed_same_clips_other_seed_differs(tiny_machines_clips):
    again = make("dataset", "synthetic-machines", size="tiny", seed=0)
    other = make("dataset", "synthetic-machines", size="tiny", seed=1)
    first = tiny_machines_clips["test"][:3]
    for clip, twin, changed in zip(first, list(again.clips("test"))[:3], list(other.clips("test"))[:3],
                                   strict=True):
        assert clip.id == twin.id == changed.id
        assert torch.equal(clip.waveform, twin.waveform)
        assert not torch.equal(clip.waveform, changed.waveform)


def test_clip_does_not_depend_on_plan_or_order(tiny_machines, tiny_machines_clips):
    # the smoke size plans more clips and machines; a clip with the same key renders identically
    bigger = make("dataset", "synthetic-machines", size="smoke", seed=0, test_anomaly=3)
    wanted = "fan/section_00_target_test_anomaly_0001"
    plan = next(p for p in bigger.plans if p.id == wanted)
    alone = bigger.render(plan).clip
    in_tiny = next(c for c in tiny_machines_clips["test"] if c.id == wanted)
    assert torch.equal(alone.waveform, in_tiny.waveform) and torch.equal(alone.tf_mask, in_tiny.tf_mask)
    assert alone.events == in_tiny.events


# ------------------------------------------------------------------------------------------------ ground truth
@pytest.mark.parametrize("clips_fixture", ["tiny_machines_clips", "tiny_planer_clips"])
def test_exact_ground_truth(request, clips_fixture):
    clips = request.getfixturevalue(clips_fixture)
    for clip in clips["train"] + clips["test"]:
        spec_sr = clip.sample_rate
        if clip.label == 0:
            assert not clip.tf_mask.any() and not clip.anomaly.any() and clip.events == ()
            continue
        twin = clip.waveform - clip.anomaly
        # the twin is itself 16-bit PCM: the anomaly is an exact difference of two quantised recordings
        assert torch.equal(torch.round(twin * 32768), twin * 32768)
        spec = preset("dcase" if spec_sr == 16000 else "planer").with_duration(clip.waveform.shape[0] / spec_sr)
        power = power_mel(spec, torch.stack([clip.anomaly, twin]))
        assert torch.equal(clip.tf_mask, power[0] > power[1])
        assert clip.tf_mask.any() and len(clip.events) >= 1
        # the anomaly lives inside its events (the planer's whole-second annotations contain them)
        inside = torch.zeros_like(clip.anomaly, dtype=torch.bool)
        for ev in clip.events:
            inside[int(ev.onset_s * spec_sr): int(math.ceil(ev.offset_s * spec_sr))] = True
        assert not clip.anomaly[~inside].any()
        assert clip.anomaly[inside].abs().max() > 0


def test_events_are_well_formed(tiny_machines_clips, tiny_planer_clips):
    for clip in tiny_machines_clips["test"]:
        for ev in clip.events:
            assert 0.0 <= ev.onset_s < ev.offset_s <= 4.0 and ev.offset_s - ev.onset_s >= 0.2 - 1e-9
            assert ev.kind in SIX_FAMILIES and 0 < ev.f_lo_hz < ev.f_hi_hz <= 8000.0
    for clip in tiny_planer_clips["test"]:
        for ev in clip.events:
            assert ev.onset_s == int(ev.onset_s) and ev.offset_s == int(ev.offset_s)
            assert 0 <= ev.onset_s < ev.offset_s <= 4 and ev.f_lo_hz is None and ev.f_hi_hz is None
            assert ev.kind == clip.meta["attributes"]["kind"]


def test_mask_coverage_and_families_across_machines():
    ds = make("dataset", "synthetic-machines", size="tiny", seed=0, train_source=0, train_target=0, test_normal=0,
              test_anomaly=3, machines=["fan", "pump", "gearbox", "valve", "slider"])
    rendered = [ds.render(p) for p in ds.plans]
    assert len(rendered) == 30 and all(r.clip.label == 1 for r in rendered)
    areas = np.array([r.clip.tf_mask.float().mean().item() for r in rendered])
    assert areas.min() > 0 and 0.005 <= float(np.median(areas)) <= 0.30
    families = {rec.family for r in rendered for rec in r.records}
    assert families == SIX_FAMILIES
    durations = [rec.event.offset_s - rec.event.onset_s for r in rendered for rec in r.records]
    # log-normal around the recipe's median, cut to the 4-s clips
    median_s = float(ds.recipe["anomalies"]["duration_median_s"])
    assert min(durations) >= 0.2 - 1e-9 and 0.5 * median_s <= float(np.median(durations)) <= min(1.5 * median_s, 4.0)


def test_planer_mask_is_exact_not_rounded(tiny_planer_clips):
    # intervals are whole seconds, the mask follows the rendered anomaly: it never leaves the intervals
    spec = preset("planer").with_duration(4.0)
    for clip in (c for c in tiny_planer_clips["test"] if c.label == 1):
        frames = torch.zeros(spec.n_frames, dtype=torch.bool)
        for ev in clip.events:
            frames[max(0, int(ev.onset_s * 40) - 1): int(ev.offset_s * 40) + 2] = True
        assert not clip.tf_mask[:, ~frames].any()


# ------------------------------------------------------------------------------------------------ difficulty
def test_difficulty_scales_the_same_draw():
    easy = make("dataset", "synthetic-machines", size="tiny", seed=3, difficulty=0.1)
    hard = make("dataset", "synthetic-machines", size="tiny", seed=3, difficulty=0.9)
    same = 0
    for plan in (p for p in easy.plans if p.label == 1):
        a, b = easy.render(plan), hard.render(plan)
        # a hard change of the machine's own sound that dominates no bin is drawn again; every other draw
        # (family, times) is the same at both difficulties, and its change shrinks with difficulty
        # (a speed shift is left out: a large and a small one both decorrelate the harmonics over an event of
        # seconds, so the energy of the difference saturates rather than shrinking)
        if [(r.family, r.event.onset_s) for r in a.records] == [(r.family, r.event.onset_s) for r in b.records] \
                and all(r.family != "speed_shift" for r in a.records):
            same += 1
            assert a.clip.anomaly.square().sum() > b.clip.anomaly.square().sum()
            assert all(x.amr_db > y.amr_db for x, y in zip(a.records, b.records, strict=True))
    assert same >= 2


def _zmax_auc(ds) -> float:
    """A cheap detector: largest time-smoothed per-band z-score against the normal training frames."""
    from benchmark.dataset import load_table
    train, test = load_table(ds, "train", keep_waveforms=False), load_table(ds, "test", keep_waveforms=False)
    x = train.x[:, 0]
    mean, std = x.mean(dim=(0, 2))[:, None], x.std(dim=(0, 2))[:, None] + 1e-3
    z = (test.x[:, 0] - mean) / std
    smooth = torch.nn.functional.avg_pool1d(z, 5, stride=1, padding=2)
    return roc_auc_score(test.labels.numpy(), smooth.abs().amax(dim=(1, 2)).numpy())


def test_difficulty_moves_detection_toward_chance():
    sizes = dict(size="tiny", seed=0, train_source=10, train_target=2, test_normal=6, test_anomaly=6)
    easy = _zmax_auc(make("dataset", "synthetic-machines", difficulty=0.0, **sizes))
    hard = _zmax_auc(make("dataset", "synthetic-machines", difficulty=1.0, **sizes))
    assert easy >= 0.9
    assert hard <= 0.75 and easy - hard >= 0.2


def _planer_with_subtle_share(tmp_path, share: float):
    source = Path(__file__).resolve().parents[1] / "tasks" / "datasets" / "synthetic-planer.toml"
    text = source.read_text()
    assert "subtle_share = 0.2 " in text
    recipe = tmp_path / f"planer-{share}.toml"
    recipe.write_text(text.replace("subtle_share = 0.2 ", f"subtle_share = {share} "))
    return make("dataset", "synthetic-planer", size="smoke", seed=0, recipe=str(recipe))


def test_a_subtle_share_renders_that_share_of_anomalies_weaker_and_leaves_normals_alone(tmp_path):
    none, half, every = (_planer_with_subtle_share(tmp_path, s) for s in (0.0, 0.8, 1.0))
    anomalous = [p for p in none.plans if p.label == 1]
    normal = [p for p in none.plans if p.label == 0][:3]
    for plan in normal:  # normal clips draw nothing from the share
        assert torch.equal(none.render(plan).clip.waveform, every.render(plan).clip.waveform)

    def subtle(ds, plan) -> bool:
        return ds.render(plan).difficulty == 0.8  # the recipe's subtle_difficulty (its difficulty is below)

    marks = [subtle(half, p) for p in anomalous]
    assert [subtle(half, p) for p in anomalous] == marks  # drawn per clip, reproducibly
    assert 0 < sum(marks) < len(marks)
    assert all(subtle(every, p) for p in anomalous) and not any(subtle(none, p) for p in anomalous)
    weaker = 0
    for plan, marked in zip(anomalous, marks, strict=True):
        clear, faint, mixed = none.render(plan), every.render(plan), half.render(plan)
        assert torch.equal(mixed.clip.waveform, (faint if marked else clear).clip.waveform)
        if [r.event for r in clear.records] == [r.event for r in faint.records]:  # the same draw, weaker
            weaker += 1
            assert all(x.amr_db > y.amr_db for x, y in zip(clear.records, faint.records, strict=True))
    assert weaker >= 2


# ------------------------------------------------------------------------------------------------ recipes
def test_recipe_and_parameter_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="no size 'huge'.*tiny"):
        make("dataset", "synthetic-machines", size="huge")
    with pytest.raises(BenchmarkError, match="no parameter 'blades'"):
        make("dataset", "synthetic-machines", size="tiny", blades=3)
    with pytest.raises(BenchmarkError, match=r"difficulty must be in \[0, 1\]"):
        make("dataset", "synthetic-planer", size="tiny", difficulty=1.5)
    with pytest.raises(DataError, match="recipe .*nope.toml not found"):
        make("dataset", "synthetic-machines", recipe=str(tmp_path / "nope.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("preset = [\n")
    with pytest.raises(DataError, match="not a valid TOML recipe"):
        make("dataset", "synthetic-machines", recipe=str(broken))
    source = Path(__file__).resolve().parents[1] / "tasks" / "datasets" / "synthetic-machines.toml"
    custom = tmp_path / "custom.toml"
    custom.write_text(source.read_text().replace('dropout = [8.0, 0.08]', 'rattle = [1.0, 0.1]'))
    with pytest.raises(DataError, match="unknown anomaly family 'rattle'"):
        make("dataset", "synthetic-machines", recipe=str(custom), size="tiny")
    with pytest.raises(DataError, match="unknown machine type.*blender"):
        make("dataset", "synthetic-machines", size="tiny", machines=["blender"])


def test_recipe_difficulty_is_the_default(tiny_machines, tiny_planer):
    assert 0.0 < tiny_machines.difficulty < 0.5 and 0.0 < tiny_planer.difficulty < 0.5
    assert make("dataset", "synthetic-machines", size="tiny", difficulty=0.7).difficulty == 0.7


# ------------------------------------------------------------------------------------------------ data synth
def test_synth_is_byte_deterministic(tmp_path, tiny_machines_on_disk, tiny_planer_on_disk):
    synth("synthetic-machines", tmp_path / "m0", seed=0, layout="dcase", size="tiny")
    assert tree_digest(tmp_path / "m0") == tree_digest(tiny_machines_on_disk)
    synth("synthetic-machines", tmp_path / "m1", seed=1, layout=None, size="tiny")
    other = tree_digest(tmp_path / "m1")
    assert other.keys() == tree_digest(tiny_machines_on_disk).keys()
    assert other != tree_digest(tiny_machines_on_disk)
    summary = synth("synthetic-planer", tmp_path / "p0", seed=0, layout="planer", size="tiny")
    assert tree_digest(tmp_path / "p0") == tree_digest(tiny_planer_on_disk)
    assert "12 train, 8 test of which 4 anomalous" in summary and "planer layout" in summary
    assert "--dataset woodplaner" in summary and "\n" not in summary
    for npz in (tmp_path / "m0").rglob("*.npz"):
        assert {i.date_time for i in zipfile.ZipFile(npz).infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_synth_dcase_layout(tiny_machines_on_disk):
    root = tiny_machines_on_disk
    wavs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    assert len(wavs) == 20
    assert "dev_data/fan/test/section_00_source_test_anomaly_0000.wav" in wavs
    assert "dev_data/fan/train/section_00_target_train_normal_0001.wav" in wavs
    masks = sorted(p.relative_to(root).as_posix() for p in (root / "ground_truth").rglob("*.npz"))
    assert masks == sorted(w.replace("dev_data/", "ground_truth/").replace("/test/", "/").replace(".wav", ".npz")
                           for w in wavs if "/test/" in w)
    for path in (root / "ground_truth").rglob("*.npz"):
        with np.load(path) as z:
            assert z["tf_mask"].shape == (128, 126) and z["tf_mask"].dtype == bool
            assert z["tf_mask"].any() == ("anomaly" in path.name) == (z["events"].shape[0] > 0)
    header, *rows = (root / "events.csv").read_text().splitlines()
    assert header == "clip,onset_s,offset_s,f_lo_hz,f_hi_hz,kind,family,amr_db" and len(rows) >= 4
    assert (root / "dev_data/fan/attributes_00.csv").read_text().splitlines()[0] == "file_name,d1p,d1v,d2p,d2v"


def test_synth_planer_layout(tiny_planer_on_disk, tiny_planer_clips):
    root = tiny_planer_on_disk
    tensors = sorted(root.rglob("*.pt"))
    assert len(tensors) == 20 and not list(root.rglob("*.wav"))
    x = torch.load(tensors[0], weights_only=True)
    assert x.shape == (80, 161) and x.dtype == torch.float32
    header, *rows = (root / "annotations.csv").read_text().splitlines()
    assert header == "file,chunk,kind,onset_s,offset_s"
    events = sum(len(c.events) for c in tiny_planer_clips["test"])
    assert len(rows) == events
    for row in rows:
        file, chunk, kind, onset, offset = row.split(",")
        assert re.fullmatch(r"planer_24-\d\d-\d\d_\d{4}_m1", file) and chunk in "123456"
        assert kind in PLANER_KINDS and onset.isdigit() and offset.isdigit() and int(onset) < int(offset) <= 4
        assert (root / "evaluation/anomalies" / kind / f"{file}_{chunk}.pt").is_file()


def test_synth_never_leaves_half_written_output(tmp_path):
    with pytest.raises(DataError, match="cannot be written in the planer layout; use --layout dcase"):
        synth("synthetic-machines", tmp_path / "out", seed=0, layout="planer", size="tiny")
    assert list(tmp_path.iterdir()) == []
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists and is not empty"):
        synth("synthetic-planer", busy, seed=0, layout=None, size="tiny")
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    with pytest.raises(DataError, match="is read from disk and cannot be synthesised"):
        synth("dcase", tmp_path / "x", seed=0, layout=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]



def test_a_recipes_comments_do_not_move_the_cell_key_and_its_values_do(tmp_path):
    from benchmark.suites import PluginConfig
    source = Path(__file__).resolve().parents[1] / "tasks" / "datasets" / "synthetic-planer.toml"
    text = source.read_text()

    def identity(recipe_text: str, name: str) -> dict:
        path = tmp_path / name
        path.write_text(recipe_text)
        return PluginConfig("dataset", "synthetic-planer", {"recipe": str(path)}).identity()

    reference = identity(text, "a.toml")["inputs"]
    # the committed recipe itself: same values, same key wherever it is read from
    assert PluginConfig("dataset", "synthetic-planer", {"recipe": str(source)}).identity()["inputs"] == reference
    assert identity("# a note on the recipe\n" + text.replace("\n\n", "\n\n# spacing\n\n"), "b.toml")["inputs"] \
        == reference
    assert identity(text.replace("subtle_share = 0.2 ", "subtle_share = 0.3 "), "c.toml")["inputs"] != reference
