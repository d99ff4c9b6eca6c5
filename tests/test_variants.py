"""Dataset variants (benchmark/variants.py): filtered and STFT copies of a dataset, declared by a suite."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.cells import expand
from benchmark.dataset import Dataset, load_table
from benchmark.errors import BenchmarkError
from benchmark.features import FeatureSpec
from benchmark.suites import check_datasets, load_suite
from benchmark.types import Clip
from benchmark.variants import VariantDataset, parse_label, sweep_cutoffs, variant_suffix

SR = 16000


class TwoTones(Dataset):
    """One clip: a 300 Hz and a 4 kHz sine of equal amplitude."""

    spec = FeatureSpec(SR, 1024, 1024, 512, 64, 0.0, 8000.0, "htk", "db", duration_s=1.0)
    truth = frozenset()

    def clips(self, split):
        t = torch.arange(SR, dtype=torch.float64) / SR
        w = 0.3 * torch.sin(2 * math.pi * 300 * t) + 0.3 * torch.sin(2 * math.pi * 4000 * t)
        yield Clip("tones/0", split, 0, SR, waveform=w.float(), meta={"machine": "tones", "section": "00"})


def tone_power(w: torch.Tensor, hz: float) -> float:
    """Power of the `hz` component of a 1-s signal (its DFT bin), away from the edges."""
    spectrum = np.fft.rfft(w.double().numpy()[2000:-2000])
    n = len(w) - 4000
    return float(np.abs(spectrum[round(hz * n / SR)]) ** 2)


@pytest.mark.parametrize("kind,kept,removed", [("lowpass", 300, 4000), ("highpass", 4000, 300)])
def test_filter_keeps_one_side_of_the_cutoff(kind, kept, removed):
    base = next(TwoTones().clips("train")).waveform
    variant = VariantDataset(TwoTones(), {"filter": kind, "cutoff_hz": 1000.0}, f"tones.{kind}-1000hz")
    out = next(variant.clips("train")).waveform
    assert out.shape == base.shape and out.dtype == base.dtype
    # the pass band within 0.1 dB, the stop band down by more than 60 dB (8th-order Butterworth, both ways)
    assert abs(10 * math.log10(tone_power(out, kept) / tone_power(base, kept))) < 0.1
    assert 10 * math.log10(tone_power(out, removed) / tone_power(base, removed)) < -60


def test_cutoff_at_or_above_nyquist_is_rejected():
    with pytest.raises(BenchmarkError, match="not below the Nyquist frequency 8000 Hz"):
        VariantDataset(TwoTones(), {"filter": "lowpass", "cutoff_hz": 8000.0}, "tones.lowpass-8000hz")


def test_labels_round_trip():
    for variant in ({"filter": "lowpass", "cutoff_hz": 400.0}, {"features": "stft"},
                    {"features": "stft", "filter": "highpass", "cutoff_hz": 1234.5}):
        label = f"synthetic-machines.{variant_suffix(variant)}"
        parsed = parse_label(label)
        assert parsed["base"] == "synthetic-machines"
        assert parsed["features"] == variant.get("features", "mel")
        assert parsed["filter"] == variant.get("filter", "")
        if "cutoff_hz" in variant:
            assert parsed["cutoff_hz"] == variant["cutoff_hz"]
        else:
            assert math.isnan(parsed["cutoff_hz"])
    plain = parse_label("synthetic-machines")
    assert (plain["base"], plain["features"], plain["filter"]) == ("synthetic-machines", "mel", "")
    assert math.isnan(plain["cutoff_hz"])
    assert sweep_cutoffs({}, "here") == [400.0 * k for k in range(1, 20)]  # 400 Hz ... 7.6 kHz by 400 Hz
    assert sweep_cutoffs({"cutoff_min_hz": 1000, "cutoff_max_hz": 2000, "cutoff_step_hz": 500}, "") == [
        1000.0, 1500.0, 2000.0]


def test_variant_table_equals_the_variant_clips(tiny_machines, tiny_machines_test):
    """The fast path (filtering the stacked base split) gives what stacking the variant's own clips gives."""
    for variant in ({"filter": "lowpass", "cutoff_hz": 1000.0}, {"features": "stft"}):
        data = VariantDataset(tiny_machines, variant, "v")
        fast = data.table(tiny_machines_test)
        slow = load_table(data, "test")
        assert fast.ids == slow.ids
        assert fast.x.shape == slow.x.shape == (len(slow), 1, *data.spec.grid)
        torch.testing.assert_close(fast.x, slow.x, atol=1e-3, rtol=0)
        torch.testing.assert_close(fast.waveform, slow.waveform, atol=1e-6, rtol=0)
        assert torch.equal(fast.tf_mask, slow.tf_mask) and torch.equal(fast.labels, slow.labels)
    stft = VariantDataset(tiny_machines, {"features": "stft"}, "v")
    assert stft.spec.grid[0] == 257 and stft.spec.hop_length == 160
    table = stft.table(tiny_machines_test)
    anomalous = table.has_truth
    assert anomalous.any() and table.tf_mask[anomalous].flatten(1).any(dim=1).all()
    assert not table.tf_mask[~anomalous].any()


def test_filtered_table_loses_the_energy_above_the_cutoff(tiny_machines, tiny_machines_test):
    data = VariantDataset(tiny_machines, {"filter": "lowpass", "cutoff_hz": 1000.0}, "v")
    table = data.table(tiny_machines_test)
    edges = tiny_machines.spec.band_edges_hz()
    high = edges[:, 0] > 1500  # mel bands wholly above 1.5 kHz
    drop = (tiny_machines_test.x[:, 0, high] - table.x[:, 0, high]).mean()
    assert drop > 20  # dB: an 8th-order low-pass is far down half an octave above its cutoff
    low = edges[:, 1] < 700
    assert (tiny_machines_test.x[:, 0, low] - table.x[:, 0, low]).abs().mean() < 0.5


SWEEP_SUITE = """
name = "sweep"
seeds = [0]
metrics = ["band_mass_spearman"]
[datasets.synthetic-machines]
size = "tiny"
[detectors.dense_ae]
budget = {{ epochs = 1 }}
[detectors.ae]
[explainers.error_map]
{extra}
"""


def write_suite(tmp_path, extra: str):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP_SUITE.format(extra=extra))
    return str(path)


def test_a_sweep_adds_train_only_cells_and_keeps_the_base_keys(tmp_path):
    plain = load_suite(write_suite(tmp_path, ""))
    suite = load_suite(write_suite(tmp_path, """
[filter_sweep]
detectors = ["dense_ae"]
cutoffs_hz = [2000, 400]
[[variants]]
dataset = "synthetic-machines"
features = "stft"
"""))
    labels = [d.label for d in suite.datasets]
    assert labels == ["synthetic-machines", "synthetic-machines.lowpass-400hz", "synthetic-machines.lowpass-2000hz",
                      "synthetic-machines.highpass-400hz", "synthetic-machines.highpass-2000hz",
                      "synthetic-machines.stft"]
    trains, evals = expand(suite)
    plain_trains, plain_evals = expand(plain)
    # the sweep trains dense_ae only and explains nothing; the stft variant trains and explains like the base
    assert [t.label for t in trains[2:6]] == [f"train {lab} / dense_ae / seed 0" for lab in labels[1:5]]
    assert len(trains) == 2 + 4 + 2 and len(evals) == len(plain_evals) * 2
    assert {e.train.dataset.label for e in evals} == {"synthetic-machines", "synthetic-machines.stft"}
    # a variant is its own cell; the base dataset's cells keep the keys they had without the variants
    assert [t.key for t in trains[:2]] == [t.key for t in plain_trains]
    assert len({t.key for t in trains}) == len(trains)
    assert trains[2].describe()["dataset"] == "synthetic-machines.lowpass-400hz"


@pytest.mark.parametrize("extra,message", [
    ("[filter_sweep]\nfilters = ['bandpass']", "filters must be a non-empty list of lowpass, highpass"),
    ("[filter_sweep]\ncutoffs_hz = []", "cutoffs_hz must be a non-empty list"),
    ("[filter_sweep]\nbogus = 1", "unknown key"),
    ("[filter_sweep]\ndetectors = ['mae']", r"detector\(s\) mae not in the suite"),
    ("[[variants]]\ndataset = 'synthetic-planer'\nfeatures = 'stft'", "dataset must name one of the suite's"),
    ("[[variants]]\ndataset = 'synthetic-machines'", "a variant needs features"),
    ("[[variants]]\ndataset = 'synthetic-machines'\nfeatures = 'cqt'", "features must be one of mel, stft"),
    ("[[variants]]\ndataset = 'synthetic-machines'\nfeatures = 'stft'\n"
     "[[variants]]\ndataset = 'synthetic-machines'\nfeatures = 'stft'", "declared twice"),
])
def test_bad_variants_are_one_line_errors(tmp_path, extra, message):
    with pytest.raises(BenchmarkError, match=message) as err:
        load_suite(write_suite(tmp_path, extra))
    assert "\n" not in str(err.value)


def test_check_datasets_rejects_a_cutoff_above_nyquist(tmp_path):
    suite = load_suite(write_suite(tmp_path, "[filter_sweep]\ncutoffs_hz = [9000]"))
    with pytest.raises(BenchmarkError, match="9000 Hz is not below the Nyquist"):
        check_datasets(suite)


def test_the_dcase_frequency_suite_reads_a_data_root(tiny_machines_on_disk):
    """`frequency-dcase` loads with --data-root: 19 cutoffs x 2 filters, and its variants read the DCASE files."""
    from dataclasses import replace

    from benchmark.registry import registry
    from benchmark.workspace import Workspace
    suite = load_suite("frequency-dcase")
    swept = [d for d in suite.datasets if "filter" in dict(d.variant)]
    assert len(swept) == 2 * 19
    assert (swept[0].label, swept[18].label) == ("dcase.lowpass-400hz", "dcase.lowpass-7600hz")
    config = replace(swept[3], params={**swept[3].params, "data_root": str(tiny_machines_on_disk)})
    ws = Workspace(store=None, device=torch.device("cpu"))
    dataset = ws.dataset(config)
    assert isinstance(dataset, VariantDataset)
    table = ws.table(config, "test")
    base = load_table(registry("dataset").make("dcase", data_root=str(tiny_machines_on_disk)), "test")
    assert table.ids == base.ids and table.x.shape == base.x.shape and torch.equal(table.tf_mask, base.tf_mask)
    # 1600 Hz low-pass: the top mel bands lose tens of dB
    high = dataset.spec.band_edges_hz()[:, 0] > 2400
    assert (base.x[:, 0, high] - table.x[:, 0, high]).mean() > 20


def test_include_merges_tables_and_rejects_a_circle(tmp_path):
    (tmp_path / "base.toml").write_text('name = "base"\nseeds = [0, 1]\n[evaluate]\nmax_clips = 4\nbatch_size = 2\n'
                                        '[datasets.synthetic-machines]\nsize = "tiny"\n[detectors.dense_ae]\n'
                                        '[explainers.random]\n')
    (tmp_path / "top.toml").write_text('include = "base.toml"\nseeds = [3]\nexplainers = "all"\n'
                                       '[evaluate]\nmax_clips = 6\n')
    suite = load_suite(str(tmp_path / "top.toml"))
    assert suite.name == "top" and suite.seeds == (3,)
    assert suite.evaluate["max_clips"] == 6 and suite.evaluate["batch_size"] == 2  # merged key by key
    from benchmark.registry import registry
    assert [e.name for e in suite.explainers] == registry("explainer").names()
    (tmp_path / "a.toml").write_text('include = "b.toml"\n')
    (tmp_path / "b.toml").write_text('include = "a.toml"\n')
    with pytest.raises(BenchmarkError, match="include circle"):
        load_suite(str(tmp_path / "a.toml"))
    (tmp_path / "c.toml").write_text('include = 3\n')
    with pytest.raises(BenchmarkError, match="include must be a suite name"):
        load_suite(str(tmp_path / "c.toml"))


DIFFICULTY_SUITE = """
name = "difficulty"
seeds = [0]
metrics = ["ff"]
difficulty_sweep = {{ {sweep} }}
[datasets.synthetic-machines]
size = "tiny"
[detectors.dense_ae]
budget = {{ epochs = 1 }}
[detectors.ae]
[explainers.error_map]
"""


def test_a_difficulty_sweep_is_one_suite_line_of_train_only_generations(tmp_path):
    from benchmark.store import Store
    from benchmark.variants import generation_config
    from benchmark.workspace import Workspace
    path = tmp_path / "d.toml"
    path.write_text(DIFFICULTY_SUITE.format(sweep='detectors = ["dense_ae"], difficulties = [1, 0, 0.5]'))
    suite = load_suite(str(path))
    labels = [d.label for d in suite.datasets]
    assert labels == ["synthetic-machines", "synthetic-machines.difficulty-0", "synthetic-machines.difficulty-0.5",
                      "synthetic-machines.difficulty-1"]
    assert [parse_label(lab)["difficulty"] for lab in labels[1:]] == [0.0, 0.5, 1.0]
    assert parse_label(labels[1])["base"] == "synthetic-machines" and math.isnan(parse_label(labels[0])["difficulty"])
    trains, evals = expand(suite)
    assert [t.label for t in trains[2:]] == [f"train {lab} / dense_ae / seed 0" for lab in labels[1:]]
    assert {e.train.dataset.label for e in evals} == {"synthetic-machines"}  # the sweep explains nothing
    assert len({t.key for t in trains}) == len(trains) == 5
    made = generation_config(suite.datasets[2])
    assert made.params == {"size": "tiny", "difficulty": 0.5} and made.variant == ()
    assert generation_config(suite.datasets[0]) is suite.datasets[0]
    check_datasets(suite)
    ws = Workspace(Store(tmp_path / "runs"), torch.device("cpu"))
    easy, hard = ws.dataset(suite.datasets[1]), ws.dataset(suite.datasets[3])
    assert (easy.difficulty, hard.difficulty) == (0.0, 1.0) and ws.dataset(suite.datasets[0]).difficulty not in (0, 1)
    # the generator's own clips at each level: the same normal clips, other anomalies
    a, b = ws.table(suite.datasets[1], "test"), ws.table(suite.datasets[3], "test")
    assert a.ids == b.ids and not torch.equal(a.x, b.x)
    assert torch.equal(a.x[a.labels == 0], b.x[b.labels == 0])


@pytest.mark.parametrize("sweep,message", [
    ("difficulties = [0, 1.5]", r"difficulties must be a non-empty list of numbers in \[0, 1\]"),
    ("levels = [0]", "unknown key"),
    ('detectors = ["mae"]', r"detector\(s\) mae not in the suite"),
    ('datasets = ["synthetic-planer"]', r"dataset\(s\) synthetic-planer not in the suite"),
])
def test_bad_difficulty_sweeps_are_one_line_errors(tmp_path, sweep, message):
    path = tmp_path / "d.toml"
    path.write_text(DIFFICULTY_SUITE.format(sweep=sweep))
    with pytest.raises(BenchmarkError, match=message) as err:
        load_suite(str(path))
    assert "\n" not in str(err.value)


def test_the_difficulty_table_reads_the_pooled_rows_beside_the_default():
    import pandas as pd

    from benchmark.difficulty_sweep import difficulty_table
    rows = [("synthetic-planer", "ae", "all", 0.8), ("synthetic-planer", "ae", "m", 0.9),
            ("synthetic-planer.difficulty-0", "ae", "all", 0.99), ("synthetic-planer.difficulty-1", "ae", "all", 0.52),
            ("synthetic-planer.difficulty-0", "dense_ae", "all", 1.0)]
    detectors = pd.DataFrame([{"dataset": d, "detector": det, "machine": m, "section": m, "auc": auc, "pauc": auc,
                               "n_seeds": 1, "n_normal": 10, "n_anomalous": 10} for d, det, m, auc in rows])
    table = difficulty_table(detectors)
    assert list(zip(table.detector, table.difficulty, table.auc, strict=True)) == [
        ("ae", 0.0, 0.99), ("ae", 1.0, 0.52), ("dense_ae", 0.0, 1.0)]
    assert table.default_auc.iloc[0] == 0.8 and math.isnan(table.default_auc.iloc[2])
    assert set(table.dataset) == {"synthetic-planer"}
    assert difficulty_table(detectors[~detectors.dataset.str.contains("difficulty")]) is None
