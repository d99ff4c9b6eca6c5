import dataclasses

import numpy as np
import pandas as pd
import pytest

from benchmark.leaderboard import bootstrap_ci, leaderboard_table
from benchmark.store import rows_frame


def test_bootstrap_ci_covers_the_true_mean_at_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 300
    for _ in range(trials):
        sample = rng.normal(2.0, 1.0, size=60)
        lo, hi = bootstrap_ci(sample, resamples=500, seed=int(rng.integers(1 << 30)))
        hits += lo <= 2.0 <= hi
    assert 0.90 <= hits / trials <= 0.985


def test_bootstrap_ci_of_a_constant_is_that_constant():
    assert bootstrap_ci(np.full(10, 3.5)) == (3.5, 3.5)


def _rows(values_by_explainer: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    rows = []
    for explainer, by_param in values_by_explainer.items():
        for param, values in by_param.items():
            for i, v in enumerate(values):
                rows.append({"dataset": "d", "machine": "m", "section": "00", "domain": "source",
                             "clip_id": f"c{i}", "label": 1, "detector": "x", "detector_seed": 0,
                             "explainer": explainer, "metric": "chunk_f1", "param": param, "value": v,
                             "chance": float("nan")})
    return rows_frame(rows)


def test_percentile_metrics_get_max_and_mean98_99_and_ranks():
    rows = _rows({"a": {"97": [0.1, 0.3], "98": [0.5, 0.7], "99": [0.2, 0.2]},
                  "b": {"97": [0.9, 0.9], "98": [0.0, 0.0], "99": [0.0, 0.2]}})
    lb = leaderboard_table(rows, []).set_index("explainer")
    assert lb.loc["a", "chunk_f1[98].mean"] == pytest.approx(0.6)
    assert lb.loc["a", "chunk_f1[max].mean"] == pytest.approx(0.6)  # max over p of the mean, not mean of max
    assert lb.loc["b", "chunk_f1[max].mean"] == pytest.approx(0.9)
    assert lb.loc["a", "chunk_f1[mean98_99].mean"] == pytest.approx((0.6 + 0.2) / 2)
    assert lb.loc["a", "chunk_f1[98].n"] == 2
    assert lb.loc["a", "chunk_f1[98].rank"] == 1 and lb.loc["b", "chunk_f1[98].rank"] == 2
    assert lb.loc["b", "chunk_f1[97].rank"] == 1


def test_derived_percentile_columns_get_a_chance_level_from_the_per_percentile_ones():
    """`[max]` and `[mean98_99]` had no chance level: a FF/chunk-F1 `[max]` could not be read against one."""
    rows = []
    for clip in range(4):
        for p, value, chance in (("97", 0.2, 0.10), ("98", 0.5, 0.30 + 0.02 * clip), ("99", 0.4, 0.50)):
            rows.append({"dataset": "d", "machine": "m", "section": "00", "domain": "source", "clip_id": f"c{clip}",
                         "label": 1, "detector": "det", "detector_seed": 0, "explainer": "e", "metric": "chunk_f1",
                         "param": p, "value": value + 0.01 * clip, "chance": chance})
    lb = leaderboard_table(rows_frame(rows), []).iloc[0]
    assert lb["chunk_f1[max].chance"] == pytest.approx(0.50)  # the highest per-p chance mean (p = 99)
    assert lb["chunk_f1[mean98_99].chance"] == pytest.approx(np.mean([(0.30 + 0.02 * c + 0.50) / 2 for c in range(4)]))
    assert lb["chunk_f1[98].chance"] == pytest.approx(0.33)


def test_publish_reads_the_metric_facts_the_run_recorded(tmp_path, monkeypatch):
    """A plugin that changes its direction after the run does not re-rank a re-published board."""
    from benchmark.registry import registry
    from benchmark.store import Store
    from tests.engine_plugins import run_suite_text
    text = ('name = "rec"\nseeds = [0]\nmetrics = ["test-band-mass"]\n[evaluate]\nmax_clips = 4\nbatch_size = 2\n'
            '[datasets.test-blobs]\n[detectors.test-template]\n[explainers.error_map]\n[explainers.random]\n')
    _, folder, _ = run_suite_text(tmp_path, text, "rec")
    manifest = Store(tmp_path / "rec").suite_manifest("rec")
    assert manifest["metric_specs"]["test-band-mass"]["higher_is_better"] is True
    before = (folder / "leaderboard.csv").read_bytes()
    plugin = registry("metric").get("test-band-mass")
    flipped_spec = dataclasses.replace(plugin.spec, higher_is_better=False)
    monkeypatch.setitem(registry("metric")._plugins, plugin.name, dataclasses.replace(plugin, spec=flipped_spec))
    from benchmark.leaderboard import publish
    again = publish(Store(tmp_path / "rec"), "rec", tmp_path / "again")
    assert (again / "leaderboard.csv").read_bytes() == before
    # without the recorded facts (a store from before they were recorded) the registry decides: ranks flip
    store = Store(tmp_path / "rec")
    store.record_suite("rec", {k: v for k, v in manifest.items() if k != "metric_specs"})
    flipped = publish(store, "rec", tmp_path / "flipped")
    assert (flipped / "leaderboard.csv").read_bytes() != before


def test_reference_levels_are_published_but_never_ranked_or_flagged():
    """`si_sdr[input]` / `[oracle]` are the same for every explainer on the same clips: no rank, no degenerate
    flag; the explanation's own `si_sdr` ranks as usual."""
    from benchmark.references import is_reference, without_references
    from benchmark.statistics import degenerate_columns, headline_columns
    rows = _rows({"a": {"": [-3.0, -1.0], "input": [-8.0, -6.0], "oracle": [9.0, 11.0]},
                  "b": {"": [-5.0, -4.0], "input": [-8.0, -6.0], "oracle": [9.0, 11.0]}})
    rows["metric"] = "si_sdr"
    lb = leaderboard_table(rows, []).set_index("explainer")
    assert lb.loc["a", "si_sdr.rank"] == 1 and lb.loc["b", "si_sdr.rank"] == 2
    assert lb.loc["a", "si_sdr[oracle].mean"] == pytest.approx(10.0)
    assert lb.loc["b", "si_sdr[input].mean"] == pytest.approx(-7.0)
    assert not [c for c in lb.columns if c.endswith(".rank") and is_reference(c)]
    flagged = degenerate_columns(lb.reset_index())
    assert set(flagged["metric"]) == {"si_sdr[input]", "si_sdr[oracle]"}  # constant, as designed
    assert without_references(flagged).empty
    assert list(without_references(flagged).columns) == list(flagged.columns)  # an empty table keeps its header
    assert headline_columns(lb.reset_index()) == ["si_sdr"]
    assert not is_reference("chunk_f1[98].mean") and is_reference("logmel_distance[input].ci_low")


def test_max_is_read_against_the_random_maps_own_max_where_the_control_ran():
    """The max over p of correlated means is biased up for every map: its chance is the random map's own [max]
    (above the max of the per-p chance means, which stays the level only where no random control ran)."""
    rows = []
    for explainer, values in (("random", {"98": [0.2, 0.6], "99": [0.5, 0.1]}),
                              ("e", {"98": [0.7, 0.7], "99": [0.1, 0.1]})):
        for p, vals in values.items():
            for clip, v in enumerate(vals):
                rows.append({"dataset": "d", "machine": "m", "section": "00", "domain": "source",
                             "clip_id": f"c{clip}", "label": 1, "detector": "det", "detector_seed": 0,
                             "explainer": explainer, "metric": "chunk_f1", "param": p, "value": v, "chance": 0.25})
    lb = leaderboard_table(rows_frame(rows), []).set_index("explainer")
    assert lb.loc["random", "chunk_f1[max].mean"] == pytest.approx(0.4)
    assert list(lb["chunk_f1[max].chance"]) == pytest.approx([0.4, 0.4])  # not 0.25, the per-p chance means' max
    alone = leaderboard_table(rows_frame([r for r in rows if r["explainer"] == "e"]), [])
    assert alone["chunk_f1[max].chance"].iloc[0] == pytest.approx(0.25)


def test_a_metric_kept_for_parity_gets_no_rank():
    rows = []
    for explainer, v in (("a", 0.3), ("b", 0.5)):
        for p in ("98", "99"):
            rows.append({"dataset": "d", "machine": "m", "section": "00", "domain": "source", "clip_id": "c0",
                         "label": 1, "detector": "det", "detector_seed": 0, "explainer": explainer,
                         "metric": "ff_segment", "param": p, "value": v, "chance": float("nan")})
    lb = leaderboard_table(rows_frame(rows), [])
    assert lb["ff_segment[98].rank"].isna().all() and lb["ff_segment[max].rank"].isna().all()
    assert list(lb["ff_segment[98].mean"]) == [0.3, 0.5]
