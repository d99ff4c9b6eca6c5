"""Publishing reads only what the run recorded: every plugin's identity with its params (`run_plugins`) and the
metric specs. A store re-publishes byte for byte after its plugins are bumped, edited, flipped or uninstalled and
after its suite file is edited or deleted; a store recorded before plugins were says so in its manifest."""
import dataclasses
import json

import pytest

import tests.engine_plugins  # noqa: F401  (registers test-blobs, test-template, test-band-mass)
from benchmark.cells import expand
from benchmark.leaderboard import publish
from benchmark.provenance import config_hash
from benchmark.registry import Plugin, Registry, registry
from benchmark.store import Store
from benchmark.suites import load_suite
from tests.engine_plugins import run_suite_text

SUITE = """name = "facts"
seeds = [0]
metrics = ["test-band-mass"]
[evaluate]
max_clips = 4
batch_size = 2
[datasets.test-blobs]
n_train = 16
[detectors.test-template]
budget = { epochs = 2 }
[explainers.error_map]
[explainers.random]
max_clips = 3
"""


def _run(tmp_path):
    """(store, first published folder, suite file) of one tiny run of SUITE."""
    _, folder, suite_file = run_suite_text(tmp_path, SUITE, "facts")
    return Store(tmp_path / "facts"), folder, suite_file


def _files(folder) -> dict[str, bytes | dict]:
    """Every file of a published folder by relative path: its bytes, the manifest as parsed JSON less `git`."""
    out: dict[str, bytes | dict] = {p.relative_to(folder).as_posix(): p.read_bytes()
                                    for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = json.loads(out["manifest.json"])
    # the checkout's commit and dirty flag are read when publishing, and other edits to the working tree can flip
    # `dirty` between two publishes; python, packages and published_on are of the publishing moment too, but the
    # same within one test process, so they stay compared
    manifest.pop("git")
    out["manifest.json"] = manifest
    return out


def _changed_plugins(monkeypatch) -> None:
    """After the run: the metric and an explainer bumped, the metric's direction flipped, every source edited."""
    metric = registry("metric").get("test-band-mass")
    flipped = dataclasses.replace(metric.spec, higher_is_better=False)
    monkeypatch.setitem(registry("metric")._plugins, metric.name,
                        dataclasses.replace(metric, version=metric.version + 1, spec=flipped))
    explainer = registry("explainer").get("error_map")
    monkeypatch.setitem(registry("explainer")._plugins, explainer.name,
                        dataclasses.replace(explainer, version=explainer.version + 1))
    monkeypatch.setattr(Plugin, "source_hash", lambda self: f"edited-{self.name}")


def test_a_store_republishes_byte_identically_after_its_plugins_and_suite_file_change(tmp_path, monkeypatch):
    store, first, suite_file = _run(tmp_path)
    recorded = store.suite_manifest("facts")["plugins"]
    _changed_plugins(monkeypatch)
    assert registry("metric").get("test-band-mass").version == recorded["metric"]["test-band-mass"]["version"] + 1
    assert registry("metric").get("test-band-mass").source_hash() != recorded["metric"]["test-band-mass"]["source"]

    suite_file.write_text(SUITE.replace("n_train = 16", "n_train = 20"))
    edited = publish(store, "facts", tmp_path / "edited")
    suite_file.unlink()
    deleted = publish(store, "facts", tmp_path / "deleted")

    want = _files(first)
    assert {"leaderboard.csv", "localisation.csv", "manifest.json", "index.html"} <= set(want)
    for folder in (edited, deleted):
        got = _files(folder)
        assert sorted(got) == sorted(want), folder
        for name in want:
            assert got[name] == want[name], f"{folder.parent.name}/{name}"


def test_a_publish_asks_no_installed_plugin(tmp_path, monkeypatch):
    """Every plugin uninstalled after the run: the board still publishes, the same."""
    store, first, _ = _run(tmp_path)

    def uninstalled(self, *args, **kwargs):
        raise AssertionError(f"publish asked the installed {self.kind} plugins")

    for method in ("get", "names", "plugins", "make"):
        monkeypatch.setattr(Registry, method, uninstalled)
    again = publish(store, "facts", tmp_path / "again")
    assert _files(again) == _files(first)


def test_the_manifest_holds_the_recorded_identities_the_cell_keys_hash(tmp_path):
    store, first, suite_file = _run(tmp_path)
    run = store.suite_manifest("facts")
    m = json.loads((first / "manifest.json").read_text())
    assert m["recorded"] == {"plugins": True, "metric_specs": True} and "recorded_note" not in m
    plugins = m["plugins"]
    assert plugins == run["plugins"]
    assert set(plugins) == {"dataset", "detector", "explainer", "metric"}
    assert plugins["dataset"]["test-blobs"]["params"] == {"n_train": 16}
    assert plugins["detector"]["test-template"]["budget"]["epochs"] == 2
    assert plugins["explainer"]["random"]["max_clips"] == 3 and plugins["explainer"]["error_map"]["params"] == {}
    assert plugins["metric"]["test-band-mass"]["source"] == registry("metric").get("test-band-mass").source_hash()
    assert m["data"]["test-blobs"]["config_hash"] == config_hash(plugins["dataset"]["test-blobs"])
    assert m["metric_specs"]["test-band-mass"]["higher_is_better"] is True
    # the recorded identities are exactly the ones the run's cell keys hash
    trains, evals = expand(load_suite(str(suite_file)))
    assert [t.key for t in trains] == run["train"]
    for cell in evals:
        for config in (cell.train.dataset, cell.train.detector, cell.explainer, *cell.metrics):
            assert plugins[config.kind][config.label] == json.loads(json.dumps(config.identity())), config.label


def test_a_store_recorded_before_plugins_were_says_its_manifest_reads_the_installed_ones(tmp_path, monkeypatch):
    store, _, _ = _run(tmp_path)
    run = store.suite_manifest("facts")
    store.record_suite("facts", {k: v for k, v in run.items() if k not in ("plugins", "metric_specs")})
    _changed_plugins(monkeypatch)
    m = json.loads((publish(store, "facts", tmp_path / "old") / "manifest.json").read_text())
    assert m["recorded"] == {"plugins": False, "metric_specs": False}
    assert "predates recorded plugin facts" in m["recorded_note"]
    assert m["plugins"]["metric"]["test-band-mass"] == {"version": 2, "source": "edited-test-band-mass"}
    assert m["metric_specs"]["test-band-mass"]["higher_is_better"] is False  # what this publish ranked by
    assert m["data"]["test-blobs"]["params"] == {"n_train": 16}  # the suite file still matches the run's hash


@pytest.mark.parametrize("family", ["temporal", "other"])
def test_a_vanished_family_table_is_removed_without_asking_the_plugins(tmp_path, monkeypatch, family):
    from benchmark.report import _remove_stale
    monkeypatch.setattr(Registry, "plugins", lambda self: pytest.fail("read the installed metrics"))
    for name in (f"{family}.csv", "localisation.csv", "notes.csv"):
        (tmp_path / name).write_text("x\n")
    _remove_stale(tmp_path, {"localisation"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["localisation.csv", "notes.csv"]


def test_the_publish_command_works_by_the_recorded_name_after_the_suite_file_is_gone(tmp_path, capsys):
    from benchmark.cli import main
    store, folder, suite_file = _run(tmp_path)
    suite_file.unlink()
    again = tmp_path / "again"
    assert main(["publish", "--suite", "facts", "--out", str(store.root), "--leaderboards", str(again)]) == 0
    assert _files(again / "facts") == _files(folder)
    assert main(["publish", "--suite", "nothing-recorded", "--out", str(store.root),
                 "--leaderboards", str(tmp_path / "none")]) == 2
    assert "unknown suite 'nothing-recorded'" in capsys.readouterr().err
