"""The leaderboard folder from a small hand-made store: every file, local references only, deterministic CSVs."""
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import tests.engine_plugins  # noqa: F401  (registers test-blobs, test-template, test-scorer, test-badshape)
from benchmark.examples import AUDIO_TAGS
from benchmark.leaderboard import leaderboard_table
from benchmark.metrics.context import MetricResult
from benchmark.registry import metrics
from benchmark.report import write_report
from benchmark.store import Store, rows_frame
from benchmark.suites import load_suite

TEST_METRICS = {
    "test-report-curve": {"summary": "report tests: a percentile metric", "family": "faithfulness",
                          "higher_is_better": True, "params": "percentile"},
    "test-report-mass": {"summary": "report tests: a localisation metric", "family": "localisation",
                         "higher_is_better": True},
    "test-report-spread": {"summary": "report tests: lower is better", "family": "complexity",
                           "higher_is_better": False},
}


def _unused(ctx) -> MetricResult:  # the report only reads these metrics' metadata
    raise NotImplementedError


@pytest.fixture(scope="module", autouse=True)
def report_metrics():
    """Registered for this module only, so suites of other tests that run every metric never meet them."""
    for name, meta in TEST_METRICS.items():
        metrics.register(name, version=1, **meta)(_unused)
    yield
    for name in TEST_METRICS:
        metrics._plugins.pop(name)

SUITE = """
name = "rep"
seeds = [0, 1]
metrics = ["test-report-curve", "test-report-mass", "test-report-spread"]
[datasets.test-blobs]
[detectors.test-template]
[detectors.test-scorer]
[explainers.error_map]
[explainers.random]
[explainers.test-badshape]
"""
DATASET, DETECTORS, EXPLAINERS, SEEDS = "test-blobs", ("test-scorer", "test-template"), ("error_map", "random"), (0, 1)
N_CLIPS, F, T, SR = 8, 16, 40, 8000
QUALITY = {"error_map": 0.8, "random": 0.2}
FAMILY_COLUMNS = {
    "faithfulness.csv": {f"test-report-curve[{p}].{s}" for p in (*range(90, 100), "max", "mean98_99")
                         for s in ("mean", "ci_low", "ci_high", "seed_std", "n", "chance", "rank")},
    "localisation.csv": {f"test-report-mass.{s}" for s in ("mean", "ci_low", "ci_high", "seed_std", "n", "chance",
                                                             "rank")},
    "complexity.csv": {f"test-report-spread.{s}" for s in ("mean", "rank")},
}
KEY_COLUMNS = ["dataset", "detector", "explainer", "status", "detector_auc", "detector_flag"]


def _wav(seconds: float, freq: float) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * SR)) / SR
    sf.write(buf, 0.3 * np.sin(2 * np.pi * freq * t), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def published(tmp_path_factory, report_metrics):
    tmp = tmp_path_factory.mktemp("report")
    suite_file = tmp / "rep.toml"
    suite_file.write_text(SUITE)
    store = Store(tmp / "runs")
    rng = np.random.default_rng(0)
    rows, records, evaluate_keys, train_keys = [], [], [], []
    for det in DETECTORS:
        for seed in SEEDS:
            train_keys.append(f"train-{det}-{seed}")
            records.append({"status": "done", "cell": "train", "dataset": DATASET, "detector": det, "seed": seed,
                            "label": f"train {det} {seed}", "cost": {"wall_s": 1.0}})
            for ex in (*EXPLAINERS, "test-badshape"):
                key = f"eval-{det}-{ex}-{seed}"
                evaluate_keys.append(key)
                if ex == "test-badshape":
                    record = {"status": "failed", "cell": "evaluate", "dataset": DATASET, "detector": det,
                              "explainer": ex, "seed": seed, "label": f"evaluate {det} {ex} {seed}",
                              "reason": "CellFailure: shape (2, 3)"}
                    records.append(record)
                    store.finish(key, record)
                    continue
                cell_rows = []
                for i in range(N_CLIPS):
                    ident = {"dataset": DATASET, "machine": "m", "section": "00", "domain": "source",
                             "clip_id": f"m/test_{i:03d}", "label": 1, "detector": det, "detector_seed": seed,
                             "explainer": ex}
                    q = QUALITY[ex] + rng.normal(0, 0.02)
                    for p in range(90, 100):
                        cell_rows.append({**ident, "metric": "test-report-curve", "param": str(p),
                                          "value": q * (p - 80) / 20, "chance": np.nan})
                    cell_rows.append({**ident, "metric": "test-report-mass", "param": "", "value": q, "chance": 0.25})
                    cell_rows.append({**ident, "metric": "test-report-spread", "param": "", "value": 1 - q,
                                      "chance": np.nan})
                record = {"status": "done", "cell": "evaluate", "dataset": DATASET, "detector": det, "explainer": ex,
                          "seed": seed, "label": f"evaluate {det} {ex} {seed}",
                          "cost": {"wall_s": 2.0, "explain_s": 0.8, "n_clips": N_CLIPS, "explainer_forward": 1.0,
                                   "explainer_backward": 0.0, "peak_memory_mb": 100.0}}
                records.append(record)
                store.finish(key, record, cell_rows)
                rows += cell_rows
                folder = store.examples_dir(key, DATASET, det, f"{ex}-s{seed}")
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(2):
                    mask = np.zeros((F, T), bool)
                    mask[4:8, 10:20] = True
                    np.savez_compressed(folder / f"m__test_{i:03d}.npz", x=rng.normal(size=(F, T)).astype(np.float16),
                                        attribution=rng.random((F, T)).astype(np.float16), tf_mask=mask)
                    if ex == "random":
                        for tag in AUDIO_TAGS:
                            (folder / f"m__test_{i:03d}.{tag}.wav").write_bytes(_wav(0.5, 440 + 100 * i))
    suite = load_suite(str(suite_file))
    manifest = {"suite": "rep", "suite_file": str(suite_file), "suite_hash": suite.file_hash(), "seeds": list(SEEDS),
                "train": train_keys, "evaluate": evaluate_keys, "device": "cpu"}
    rows = rows_frame(rows)
    detectors = pd.DataFrame([{"dataset": DATASET, "detector": det, "machine": machine, "section": "all",
                               "n_seeds": 2, "n_normal": 4, "n_anomalous": 4, "auc": auc, "auc_std": 0.01,
                               "auc_source": auc, "auc_target": np.nan, "pauc": auc - 0.1, "official_score": auc - 0.05}
                              for det, auc in (("test-scorer", 0.55), ("test-template", 0.9))
                              for machine in ("all", "m")])
    lb = leaderboard_table(rows, records)
    out = tmp / "lb" / "rep"
    again = tmp / "lb2" / "rep"
    for folder in (out, again):
        folder.mkdir(parents=True)
        write_report(folder, suite_name="rep", leaderboard=lb, detectors=detectors, rows=rows, records=records,
                     store=store, manifest=manifest)
    return out, again


def test_every_file_exists(published):
    out, _ = published
    for name in ["README.md", "index.html", "manifest.json", "ranks.csv", "neighbours.csv", "controls.csv",
                 "agreement.csv", "degenerate.csv", "claims.csv", *FAMILY_COLUMNS]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "other.csv").exists() and not (out / "temporal.csv").exists()


def test_html_references_only_local_files_and_has_figures_and_players(published):
    out, _ = published
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page
    refs = re.findall(r'(?:src|href)="([^"#:]+)"', page)
    assert refs and all((out / r).is_file() for r in refs), [r for r in refs if not (out / r).is_file()]
    pngs = [r for r in refs if r.endswith(".png")]
    assert len(pngs) >= 3
    assert {"figures/curves-test-blobs-test-template.png", "figures/agreement.png",
            "figures/gallery-test-blobs-test-template.png"} <= set(pngs)
    players = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    # one listenable example per detector x explainer that returns audio (here: random), three tracks each
    assert len(players) == 2 * len(AUDIO_TAGS)
    assert all(p.startswith("audio/") and (out / p).is_file() for p in players)
    copied = sf.info(str(out / players[0]))
    assert copied.samplerate == SR and copied.frames == SR // 2
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 20 * 2**20


def test_family_csvs_have_the_documented_columns(published):
    out, _ = published
    for name, metric_cols in FAMILY_COLUMNS.items():
        df = pd.read_csv(out / name)
        assert list(df.columns[:6]) == KEY_COLUMNS
        assert metric_cols <= set(df.columns)
        assert set(df["explainer"]) == {"error_map", "random", "test-badshape"}
        flags = df.drop_duplicates("detector").set_index("detector")["detector_flag"]
        assert flags["test-scorer"] == "low_auc" and flags["test-template"] == "ok"
    loc = pd.read_csv(out / "localisation.csv").set_index(["detector", "explainer"])
    assert loc.loc[("test-template", "error_map"), "test-report-mass.mean"] == pytest.approx(0.8, abs=0.02)
    assert loc.loc[("test-template", "error_map"), "detector_auc"] == pytest.approx(0.9)
    assert loc.loc[("test-template", "test-badshape"), "status"].startswith("failed: CellFailure")


def test_statistics_tables(published):
    out, _ = published
    ranks = pd.read_csv(out / "ranks.csv")
    assert list(ranks.columns) == ["dataset", "detector", "family", "explainer", "detector_auc", "detector_flag",
                                   "n_metrics", "mean_rank", "borda", "borda_rank"]
    best = ranks[(ranks["family"] == "all") & (ranks["borda_rank"] == 1)]
    assert set(best["explainer"]) == {"error_map"}
    # the complexity metric is lower-is-better: error_map (spread 0.2) still wins it
    cx = ranks[(ranks["family"] == "complexity") & (ranks["detector"] == "test-template")].set_index("explainer")
    assert cx.loc["error_map", "borda_rank"] == 1
    tests = pd.read_csv(out / "neighbours.csv")
    assert set(tests["metric"]) == {"test-report-curve[mean98_99]", "test-report-mass", "test-report-spread"}
    assert (tests["better"] == "error_map").all() and (tests["n_shared"] == N_CLIPS).all()  # seeds nested in clips
    assert tests["distinguishable"].all() and (tests["p_holm"] < 0.05).all()
    controls = pd.read_csv(out / "controls.csv").set_index(["detector", "metric", "explainer"])
    assert set(controls.index.get_level_values("explainer")) == {"error_map"}  # the failed cell has no rows
    mass = controls.loc[("test-template", "test-report-mass", "error_map")]
    assert mass["control"] == "random" and mass["n_shared"] == N_CLIPS
    assert mass["p_value"] == pytest.approx(1 / 2**N_CLIPS)  # one-sided, every clip better (its seeds averaged)
    assert controls["beats_control"].all()
    # complexity (and sanity) columns are not tested against a random map: it is no null there
    assert set(controls.index.get_level_values("metric")) == {"test-report-curve[mean98_99]", "test-report-mass"}
    agreement = pd.read_csv(out / "agreement.csv").set_index(["metric_a", "metric_b"])
    assert agreement.loc[("test-report-mass", "test-report-spread"), "tau"] == pytest.approx(1.0)


def test_readme_flags_weak_detectors_and_marks_neighbours(published):
    out, _ = published
    readme = (out / "README.md").read_text()
    assert "| explainer | Borda rank |" in readme
    assert "⚠ detector AUC 0.55 < 0.6" in readme
    assert "test-report-mass: error_map > random" in readme
    assert "Above the random control" in readme and "test-report-mass vs random (n 8): error_map (p " in readme
    assert "failed: CellFailure: shape (2, 3)" in readme


def test_manifest_records_provenance(published):
    out, _ = published
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["git"]) == {"commit", "dirty"}
    assert m["packages"]["torch"] and m["packages"]["numpy"]
    assert m["seeds"] == [0, 1] and m["device"] == "cpu"
    assert m["published_on"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability() != ""
    assert m["published_on"]["torch_threads"] == torch.get_num_threads()
    assert len(m["data"]["test-blobs"]["config_hash"]) == 16
    assert m["plugins"]["explainer"]["error_map"]["version"] == 1
    assert set(m["plugins"]["metric"]) == {"test-report-curve", "test-report-mass", "test-report-spread"}
    assert m["cells"] == {"train": 4, "evaluate": 12, "done": 12, "failed": 4, "skipped": 0}


def test_csvs_are_byte_identical_across_publishes(published):
    out, again = published
    names = sorted(p.name for p in out.glob("*.csv"))
    assert names == sorted(p.name for p in again.glob("*.csv")) and len(names) == 11
    assert {"claims.csv", "power.csv"} <= set(names)
    for name in names:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_a_run_without_scores_still_gets_a_page(tmp_path):
    records = [{"status": "skipped", "dataset": DATASET, "detector": "test-scorer", "explainer": "error_map", "seed": 0,
                "label": "evaluate test-scorer error_map 0", "reason": "error_map needs reconstruction"}]
    lb = leaderboard_table(rows_frame([]), records)
    write_report(tmp_path, suite_name="empty", leaderboard=lb, detectors=pd.DataFrame(), rows=rows_frame([]),
                 records=records, store=Store(tmp_path / "runs"), manifest={"evaluate": ["k"], "train": []})
    readme = (tmp_path / "README.md").read_text()
    assert "skipped: error_map needs reconstruction" in readme
    assert pd.read_csv(tmp_path / "ranks.csv").empty and pd.read_csv(tmp_path / "neighbours.csv").empty
    assert json.loads((tmp_path / "manifest.json").read_text())["cells"]["skipped"] == 1


def test_git_state_counts_code_not_published_tables(tmp_path):
    import subprocess

    from benchmark.provenance import git_state
    run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "core.py").write_text("x = 1\n")
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    (tmp_path / "leaderboards" / "quick").mkdir(parents=True)
    (tmp_path / "leaderboards" / "quick" / "leaderboard.csv").write_text("a\n")
    state = git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "benchmark" / "core.py").write_text("x = 2\n")
    assert git_state(tmp_path)["dirty"] is True


def test_audio_examples_play_distinct_clips_where_the_cells_stored_them(tmp_path):
    from benchmark.examples import copy_audio
    cells = []
    for explainer in ("a", "b", "c"):
        source = tmp_path / "store" / explainer
        source.mkdir(parents=True)
        for clip in ("clip1", "clip2"):
            for tag in ("input", "explanation"):
                sf.write(str(source / f"{clip}.{tag}.wav"), np.zeros(160, dtype=np.float32), 16000)
        cells.append(({"dataset": "d", "detector": "det", "explainer": explainer, "seed": 0}, source))
    examples = copy_audio(cells, tmp_path / "out")
    clips = [e.label.rsplit("clip ", 1)[1] for e in examples]
    assert clips == ["clip1", "clip2", "clip1"]  # every stored clip once before any repeats
    assert all((tmp_path / "out" / rel).is_file() for e in examples for _, rel in e.tracks)


def test_first_screen_says_who_is_tied_at_the_top_and_what_it_beats(published):
    out, _ = published
    readme = (out / "README.md").read_text()
    glance = readme[readme.index("## At a glance"):readme.index("## Detectors")]
    assert readme.index("**Contents:** [At a glance](#at-a-glance)") < readme.index("## At a glance")
    assert "| test-blobs | test-template (ok) | test-report-curve[mean98_99], n 8: error_map (> random) |" in glance
    assert "controls (random) it beats" in glance  # the suite has no energy control


def test_localisation_table_carries_the_lift_over_each_control_with_its_test(published):
    out, _ = published
    table = pd.read_csv(out / "localisation.csv").set_index(["detector", "explainer"])
    controls = pd.read_csv(out / "controls.csv").set_index(["detector", "metric", "explainer", "control"])
    col = "test-report-mass"
    for detector in ("test-template", "test-scorer"):
        lift = table.loc[(detector, "error_map"), f"{col}.lift_random"]
        want = table.loc[(detector, "error_map"), f"{col}.mean"] - table.loc[(detector, "random"), f"{col}.mean"]
        assert lift == pytest.approx(want, rel=1e-5) and lift > 0  # CSV values carry 6 digits
        assert table.loc[(detector, "error_map"), f"{col}.p_random"] == pytest.approx(
            controls.loc[(detector, col, "error_map", "random"), "p_holm"], rel=1e-5)
        assert table.loc[(detector, "random"), f"{col}.lift_random"] == 0
    assert not any(c.endswith("_energy") for c in table.columns)  # the suite runs no energy control


def test_sensitivity_is_not_tested_against_the_random_map(tmp_path):
    """The random map ignores its input, so its sensitivity is 0: 'beats random' there is vacuous."""
    rows = []
    for explainer, level in (("error_map", 0.2), ("random", 0.0), ("saliency", 0.4)):
        for clip in range(8):
            base = {"dataset": DATASET, "machine": "m", "section": "00", "domain": "source", "clip_id": f"c{clip}",
                    "label": 1, "detector": "test-template", "detector_seed": 0, "explainer": explainer,
                    "chance": np.nan, "param": ""}
            rows.append({**base, "metric": "sensitivity_max", "value": level + 0.01 * clip})
            rows.append({**base, "metric": "pointing_game", "value": float(explainer != "random")})
    rows = rows_frame(rows)
    lb = leaderboard_table(rows, [])
    write_report(tmp_path, suite_name="sens", leaderboard=lb, detectors=pd.DataFrame(), rows=rows, records=[],
                 store=Store(tmp_path / "runs"), manifest={"evaluate": [], "train": []})
    controls = pd.read_csv(tmp_path / "controls.csv")
    assert set(controls["metric"]) == {"pointing_game"}


def test_family_tables_print_no_rank_the_tests_could_never_support(tmp_path):
    rows = []
    for explainer, level in (("error_map", 0.9), ("random", 0.1), ("saliency", 0.5)):
        for clip in range(3):  # 3 clips: the best exact two-sided Wilcoxon p is 0.25
            rows.append({"dataset": DATASET, "machine": "m", "section": "00", "domain": "source",
                         "clip_id": f"c{clip}", "label": 1, "detector": "test-template", "detector_seed": 0,
                         "explainer": explainer, "chance": np.nan, "param": "", "metric": "pointing_game",
                         "value": level + 0.01 * clip})
    rows = rows_frame(rows)
    write_report(tmp_path, suite_name="tiny", leaderboard=leaderboard_table(rows, []), detectors=pd.DataFrame(),
                 rows=rows, records=[], store=Store(tmp_path / "runs"), manifest={"evaluate": [], "train": []})
    readme = (tmp_path / "README.md").read_text()
    assert readme.count("≈ (n too small to rank)") == 3 and "] #1" not in readme


def test_a_metric_kept_for_parity_is_published_beside_the_controls_not_ranked():
    """ff_segment (not ranked: a map with peaks everywhere replaces the whole annotation) gets lift columns over
    the random control and a page table of its own, and never a headline."""
    from benchmark.page_sections import unranked_blocks
    from benchmark.report import with_lifts
    from benchmark.statistics import control_tests, headline_columns, metric_meta, unranked_columns
    rows = []
    for explainer, level in (("random", 0.6), ("error_map", 0.5), ("saliency", 0.2)):
        for clip in range(8):
            for p in ("98", "99"):
                rows.append({"dataset": "d", "machine": "m", "section": "00", "domain": "source",
                             "clip_id": f"c{clip}", "label": 1, "detector": "det", "detector_seed": 0,
                             "explainer": explainer, "metric": "ff_segment", "param": p,
                             "value": level + 0.01 * clip, "chance": float("nan")})
    rows = rows_frame(rows)
    board = leaderboard_table(rows, [])
    metas = {"ff_segment": metric_meta("ff_segment")}
    assert headline_columns(board, metas) == [] and unranked_columns(board, metas) == ["ff_segment[mean98_99]"]
    controls = control_tests(board, rows, ["ff_segment[mean98_99]"], control="random", meta=metas)
    table = with_lifts(board, board, ["ff_segment[mean98_99]"], controls).set_index("explainer")
    assert table.loc["error_map", "ff_segment[mean98_99].lift_random"] == pytest.approx(-0.1)
    assert table.loc["saliency", "ff_segment[mean98_99].lift_random"] == pytest.approx(-0.4)
    assert table.loc["error_map", "ff_segment[mean98_99].p_random"] == 1.0  # the random map wins: no lift
    blocks = unranked_blocks(["ff_segment[mean98_99]"], board, controls, 0.05)
    assert [b.kind for b in blocks] == ["p", "table"] and "Not ranked" in blocks[0].text
    grid = blocks[1].table
    assert [r[2] for r in grid.rows] == ["error_map", "random", "saliency"]
    assert grid.rows[0][4].startswith("-0.1") and "#" not in grid.rows[0][3]


def test_audio_quality_tables_show_the_input_and_oracle_levels_of_each_row():
    """A listenable explanation is read against the clip itself and the true anomaly's ideal mask on the same
    clips: the page shows both beside the ranked value (they were only in the CSV)."""
    from benchmark.page_sections import family_blocks
    from benchmark.statistics import control_tests, family_ranks, neighbour_tests
    rows = []
    for explainer, own in (("lmac", 2.0), ("lmac_td", 4.0)):
        for clip in range(4):
            for param, value in (("", own + clip), ("input", -7.0 + clip), ("oracle", 12.0 + clip)):
                rows.append({"dataset": "d", "machine": "m", "section": "00", "domain": "source",
                             "clip_id": f"c{clip}", "label": 1, "detector": "det", "detector_seed": 0,
                             "explainer": explainer, "metric": "si_sdr", "param": param, "value": value,
                             "chance": float("nan")})
    rows = rows_frame(rows)
    board = leaderboard_table(rows, [])
    ranks = family_ranks(board, {"audio_quality": ["si_sdr"]})
    tests = neighbour_tests(board, rows, ["si_sdr"], 0.05)
    controls = control_tests(board, rows, ["si_sdr"], control="random")
    table = [b.table for b in family_blocks("audio_quality", ["si_sdr"], board, ranks, tests, controls, {}, 0.6,
                                            0.05) if b.kind == "table"][0]
    assert table.header[3:6] == ["si_sdr", "si_sdr[input] (reference level)", "si_sdr[oracle] (reference level)"]
    assert table.rows[0][4].startswith("-5.5 [") and table.rows[0][5].startswith("13.5 [")


def test_a_column_only_one_explainer_scored_prints_no_rank_badge():
    from benchmark.page_sections import family_blocks
    from benchmark.statistics import control_tests, family_ranks, neighbour_tests
    rows = rows_frame([{"dataset": "d", "machine": "m", "section": "00", "domain": "source", "clip_id": f"c{clip}",
                        "label": 1, "detector": "det", "detector_seed": 0, "explainer": "encodec_latent",
                        "metric": "si_sdr", "param": "", "value": float(clip), "chance": float("nan")}
                       for clip in range(4)])
    board = leaderboard_table(rows, [])
    table = [b.table for b in family_blocks("audio_quality", ["si_sdr"], board, family_ranks(board, {
        "audio_quality": ["si_sdr"]}), neighbour_tests(board, rows, ["si_sdr"], 0.05),
        control_tests(board, rows, ["si_sdr"], control="random"), {}, 0.6, 0.05) if b.kind == "table"][0]
    assert table.rows[0][3] == "1.5 [0.5, 2.5]"  # no '#1', no 'n too small to rank': there is no ranking


def test_a_saturated_synthesis_sweep_is_left_out_with_its_reason():
    from benchmark.report import saturated_sweeps, without_saturated
    board = pd.DataFrame({"dataset": ["d", "d"], "detector": ["ae", "dense_ae"], "explainer": ["encodec_latent"] * 2,
                          "agreement[100].mean": [1.0, 1.0], "agreement[0].mean": [1.0, 0.25],
                          "agreement[21].mean": [1.0, 0.5], "drop[21].mean": [0.0, 0.4],
                          "agreement_random[100].mean": [1.0, 1.0], "agreement_random[0].mean": [0.5, 0.25]})
    saturated = saturated_sweeps(board)
    assert list(zip(saturated.detector, saturated.sweep, strict=True)) == [("ae", "agreement")]
    table = without_saturated(board, saturated).set_index("detector")
    assert np.isnan(table.loc["ae", "agreement[21].mean"]) and np.isnan(table.loc["ae", "drop[21].mean"])
    assert table.loc["ae", "agreement.saturated"].startswith("saturated sweep: agreement 1.00")
    assert table.loc["dense_ae", "agreement[21].mean"] == 0.5 and table.loc["dense_ae", "agreement.saturated"] == ""
    assert table.loc["ae", "agreement_random[0].mean"] == 0.5  # the random baseline's own sweep is not saturated


def test_explained_seeds_are_named_only_where_fewer_than_the_trained_ones():
    from benchmark.report import explained_seeds
    assert explained_seeds({"seeds": [0, 1, 2], "explain_seeds": [2, 1]}) == [1, 2]
    assert explained_seeds({"seeds": [0, 1, 2], "explain_seeds": [0, 1, 2]}) is None
    assert explained_seeds({"seeds": [3], "explain_seeds": []}) is None  # train-only: flags over every seed
    assert explained_seeds({"seeds": [0]}) is None  # a store recorded before explain_seeds
