"""The command line as a user meets it: exit codes, one-line errors, nothing written on bad input."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_list_shows_every_kind():
    out = cli("list")
    assert out.returncode == 0
    for header in ("datasets (", "detectors (", "explainers (", "metrics ("):
        assert header in out.stdout
    assert "dense_ae" in out.stdout and "error_map" in out.stdout


def test_unknown_detector_exits_2_in_one_line_and_writes_nothing(tmp_path):
    out = cli("run", "--suite", "smoke", "--detectors", "dense_aee", "--out", str(tmp_path / "o"),
              "--leaderboards", str(tmp_path / "l"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "unknown detector 'dense_aee'; did you mean 'dense_ae'?" in out.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "l").exists()


def test_bad_option_and_bad_suite_exit_2(tmp_path):
    out = cli("run", "--suite", "smoke", "--bogus")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "--bogus" in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    out = cli("run", "--suite", str(bad), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "not valid TOML" in out.stderr and not (tmp_path / "o").exists()
    out = cli("run", "--suite", "smoke", "--device", "tpu", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "--device 'tpu'" in out.stderr and not (tmp_path / "o").exists()


def test_publish_without_a_run_says_what_to_do(tmp_path):
    out = cli("publish", "--suite", "smoke", "--out", str(tmp_path / "none"))
    assert out.returncode == 2 and "run `python -m benchmark run --suite smoke" in out.stderr


def test_help_names_the_command_and_every_run_option_has_help():
    out = cli("run", "--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m benchmark run")
    from benchmark.cli import build_parser
    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
    undocumented = [a.dest for a in run._actions if not a.help]
    assert undocumented == []


def test_estimate_prints_the_cost_and_writes_nothing(tmp_path):
    out = cli("run", "--suite", "full", "--estimate", "--out", str(tmp_path / "o"), "--leaderboards",
              str(tmp_path / "l"))
    assert out.returncode == 0, out.stderr
    hours = float(out.stdout.split("estimated ")[1].split(" CPU-hours")[0])
    assert hours > 2 and "running on cpu" in out.stderr and not (tmp_path / "o").exists()
    gpu = lambda text: float(text.split("at least ")[1].split(" GPU-hours")[0])  # noqa: E731
    faster = cli("run", "--suite", "full", "--estimate", "--gpu-tflops", "40", "--out", str(tmp_path / "o"))
    assert gpu(faster.stderr) == pytest.approx(gpu(out.stderr) / 2, rel=0.01)
    bad = cli("run", "--suite", "full", "--estimate", "--gpu-tflops", "0", "--out", str(tmp_path / "o"))
    assert bad.returncode == 2 and "--gpu-tflops 0" in bad.stderr


def test_a_long_cpu_run_needs_yes(tmp_path):
    out = cli("run", "--suite", "full", "--device", "cpu", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "pass --yes" in out.stderr and out.stderr.strip().count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_add_plugins_must_be_registered_and_new(tmp_path):
    out = cli("run", "--suite", "smoke", "--add-explainers", "energyy", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "did you mean 'energy'" in out.stderr
    out = cli("run", "--suite", "smoke", "--add-explainers", "random", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "already in suite 'smoke'" in out.stderr and not (tmp_path / "o").exists()


def test_default_folders_are_under_results_with_a_line_per_cell(tmp_path):
    """From any working directory: the store and tables go to ./results/, never ./leaderboards/; stderr (not a
    terminal here) gets one line per cell; an explainer added on the command line is run and published."""
    out = cli("run", "--suite", "smoke", "--add-explainers", "energy", "--add-metrics", "pointing_game",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    lines = [line for line in out.stderr.splitlines() if " cell " in line]
    assert len(lines) == 4 and lines[0].startswith("[1/4] done    cell train synthetic-machines / dense_ae")
    assert "ETA" in lines[1] and "ETA" not in lines[-1]
    folder = tmp_path / "results" / "leaderboards" / "smoke"
    import pandas as pd

    import benchmark
    board = pd.read_csv(folder / "leaderboard.csv")
    assert set(board["explainer"]) == {"error_map", "random", "energy"}
    assert "pointing_game.mean" in board.columns
    results = benchmark.load_results(folder)
    stored = benchmark.load_results(tmp_path / "results" / "runs", suite="smoke")
    assert len(results) == len(stored) > 0 and set(results["explainer"]) >= {"energy"}
    assert set(stored["metric"]) == {"anomaly_score", "ff", "chunk_f1", "pointing_game"}
    cols = ["dataset", "detector", "explainer", "metric", "param", "clip_id"]
    pd.testing.assert_frame_equal(results.sort_values(cols).reset_index(drop=True),
                                  stored.sort_values(cols).reset_index(drop=True))
    import json
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema_version"] >= 2 and manifest["results_schema"]["columns"] == list(results.columns)
    page = (folder / "index.html").read_text()
    assert '<nav id="toc">' in page and 'href="#at-a-glance"' in page and '<h2 id="at-a-glance">' in page
    assert page.index('id="at-a-glance"') < page.index('id="detectors"')
    detectors = pd.read_csv(folder / "detectors.csv")
    assert {"epochs", "capped"} <= set(detectors.columns) and not detectors["capped"].any()
    assert (detectors["epochs"] >= 1).all() and (detectors["epochs"] <= 8).all()


def test_api_run_returns_the_published_tables(tmp_path):
    import benchmark
    tables = benchmark.run("smoke", out=tmp_path / "runs", leaderboards=tmp_path / "lb", progress="off")
    assert tables["folder"] == tmp_path / "lb" / "smoke" and tables["failed"] == []
    assert set(tables["leaderboard"]["explainer"]) == {"error_map", "random"}
    assert {"detectors", "controls", "neighbours", "ranks", "results"} <= set(tables)
    assert len(tables["results"]) == len(benchmark.load_results(tmp_path / "runs"))
    again = benchmark.run("smoke", out=tmp_path / "runs", leaderboards=tmp_path / "lb", progress="off")
    assert again["leaderboard"].equals(tables["leaderboard"])  # replayed from the store
    import pytest

    from benchmark.errors import BenchmarkError
    with pytest.raises(BenchmarkError, match="pass --yes"):
        benchmark.run("full", out=tmp_path / "full", device="cpu")
    assert not (tmp_path / "full").exists()


def test_docs_suites_example_loads_and_every_key_is_documented(tmp_path):
    from benchmark.detector import Budget
    from benchmark.suites import EVALUATE_KEYS, TOP_KEYS, load_suite
    doc = (ROOT / "docs" / "suites.md").read_text()
    example = tmp_path / "example.toml"
    example.write_text(doc.split("```toml\n")[1].split("```")[0])
    suite = load_suite(str(example))
    assert suite.name == "my-study" and suite.seeds == (0, 1, 2)
    assert {m.name: m.max_clips for m in suite.metrics}["sensitivity_max"] == 16
    for key in [*TOP_KEYS, *EVALUATE_KEYS, *(f"budget.{k}" for k in Budget.__dataclass_fields__)]:
        assert f"`{key}`" in doc or f"`[{key}.NAME]`" in doc or f"`[{key}]`" in doc, key


def test_a_folder_named_like_a_suite_does_not_hide_it(tmp_path):
    (tmp_path / "smoke").mkdir()
    out = cli("run", "--suite", "smoke", "--estimate", cwd=tmp_path)
    assert out.returncode == 0 and "smoke: estimated" in out.stdout
    out = cli("run", "--suite", "nowhere.toml", "--estimate", cwd=tmp_path)
    assert out.returncode == 2 and "suite file 'nowhere.toml' does not exist" in out.stderr
