"""The command line as a user meets it: exit codes, one-line errors, nothing written on bad input."""
import os
import subprocess
import sys
from pathlib import Path

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
