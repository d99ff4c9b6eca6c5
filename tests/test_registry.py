import subprocess
import sys
from pathlib import Path

import pytest

import benchmark
from benchmark.errors import BenchmarkError, UnknownPluginError
from benchmark.registry import Registry, registry


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownPluginError, match=r"did you mean 'dense_ae'"):
        registry("detector").get("dense_a")


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(UnknownPluginError, match=r"unknown explainer 'zzzz'.*known: .*error_map"):
        registry("explainer").get("zzzz")


def test_unknown_kind_is_a_usage_error():
    with pytest.raises(BenchmarkError, match="did you mean 'detectors'"):
        registry("detectorz")


def test_duplicate_registration_from_another_factory_is_refused():
    reg = Registry("metric")
    reg.register("m", summary="one", family="complexity", higher_is_better=True)(lambda ctx: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("m", summary="two", family="complexity", higher_is_better=True)(lambda ctx: None)


def test_make_rejects_unknown_parameters_by_name():
    with pytest.raises(BenchmarkError, match=r"has no parameter 'widht'.*frames"):
        benchmark.make("detector", "dense_ae", widht=3)


def test_public_api_lists_and_makes():
    names = [p["name"] for p in benchmark.list_plugins("detectors")]
    assert "dense_ae" in names
    det = benchmark.make("detector", "dense_ae", hidden=16)
    assert det.hidden == 16
    listing = {p["name"]: p for p in benchmark.list_plugins("explainer")}
    assert listing["error_map"]["needs"] == ["reconstruction"]


def test_source_hash_tracks_the_defining_file():
    plugin = registry("detector").get("dense_ae")
    assert plugin.source_file.name == "dense_ae.py"
    assert len(plugin.source_hash()) == 16 and plugin.source_hash() == plugin.source_hash()


def test_source_hash_covers_the_same_package_modules_imported(tmp_path, monkeypatch):
    from benchmark.registry import Plugin, closure_hash, local_sources
    plugin = registry("detector").get("ae")
    names = [f.name for f in local_sources(plugin.source_file)]
    assert {"_skip_cae.py", "ae.py", "detector.py", "registry.py"} <= set(names)
    assert "report.py" not in names and "__init__.py" not in names  # a package's __init__ only when imported
    pkg = tmp_path / "xaipkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "parse_only.py").write_text("from ._helper import h\nfrom . import other\nfrom ..core import g\nimport os\n")
    (pkg / "plugin.py").write_text("from ._helper import h\n\n\ndef make():\n    return h\n")
    (pkg / "_helper.py").write_text("from ._deeper import h\n")
    (pkg / "_deeper.py").write_text("h = 1\n")
    (pkg / "other.py").write_text("")
    (pkg / "unused.py").write_text("")
    assert [f.name for f in local_sources(pkg / "parse_only.py")] == [
        "_deeper.py", "_helper.py", "other.py", "parse_only.py"]
    monkeypatch.syspath_prepend(str(tmp_path))
    from xaipkg.plugin import make
    fake = Plugin(kind="explainer", name="fake", factory=make, summary="", version=1)
    before = fake.source_hash()
    (pkg / "unused.py").write_text("x = 1\n")
    assert closure_hash(fake.source_file) == before
    (pkg / "_deeper.py").write_text("h = 2\n")
    assert closure_hash(fake.source_file) != before and len(closure_hash(fake.source_file)) == 16
    assert fake.source_hash() == before  # once per process: a run's keys do not move under an edit


def test_engine_keys_follow_the_code_that_computes_them(tmp_path):
    """A copy of the code elsewhere hashes the same; a comment in training.py moves the train closure, one in
    report.py, the executors or the suite-file reader moves none; a metric module moves the metric values'
    closure, not the explanations'."""
    import shutil

    from benchmark.registry import closure_hash
    root = Path(__file__).resolve().parent.parent
    for package in ("benchmark", "adapters"):
        shutil.copytree(root / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    modules = ("training.py", "explain_step.py", "evaluation.py", "data_cache.py")
    here = {m: closure_hash(root / "benchmark" / m) for m in modules}
    there = lambda: {m: closure_hash(tmp_path / "benchmark" / m) for m in modules}  # noqa: E731
    assert there() == here
    # publish, schedule, or read suite files (cells hash the configs `suite_types.py` holds, not the reader)
    for scheduling in ("report.py", "executors.py", "dask_executor.py", "runner.py", "suites.py"):
        with open(tmp_path / "benchmark" / scheduling, "a") as fh:
            fh.write("# probe\n")
        assert there() == here, scheduling
    with open(tmp_path / "benchmark" / "training.py", "a") as fh:
        fh.write("# probe\n")
    moved = there()
    assert moved["training.py"] != here["training.py"]
    faith = tmp_path / "benchmark" / "metrics" / "faithfulness.py"
    before = closure_hash(faith)
    with open(faith, "a") as fh:
        fh.write("# probe\n")
    assert closure_hash(faith) != before and there()["explain_step.py"] == moved["explain_step.py"]


def test_committed_plugin_index_matches_the_plugins():
    """`list` reads `benchmark/plugin_index.json` without importing torch; it must describe the code as it is
    (after editing a plugin's metadata: `python -m benchmark.plugin_index`)."""
    import json

    from benchmark import plugin_index
    stored = json.loads(plugin_index.INDEX_FILE.read_text())
    assert stored["digest"] == plugin_index.sources_digest(), "stale: run `python -m benchmark.plugin_index`"
    # a fresh interpreter: other tests register their own plugins into this process's registries
    fresh = subprocess.run([sys.executable, "-c", "import json; from benchmark.plugin_index import build_listing;"
                            " print(json.dumps(build_listing()))"], capture_output=True, text=True, check=True)
    assert stored["listing"] == json.loads(fresh.stdout)


def test_stale_plugin_index_is_rebuilt_not_used(tmp_path, monkeypatch):
    import json

    from benchmark import plugin_index
    fake = tmp_path / "index.json"
    fake.write_text(json.dumps({"digest": "0" * 16, "listing": {"detector": [{"name": "ghost"}]}}))
    monkeypatch.setattr(plugin_index, "INDEX_FILE", fake)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    got = plugin_index.listing()
    assert "ghost" not in [p["name"] for p in got["detector"]]
    assert "dense_ae" in [p["name"] for p in got["detector"]]
    cached = list((tmp_path / "cache" / "audio-xai-bench").glob("plugin-index-*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["listing"] == got
    # a second edit of the sources changes the digest: the cached listing is not taken for it
    monkeypatch.setattr(plugin_index, "sources_digest", lambda: "f" * 16)
    monkeypatch.setattr(plugin_index, "build_listing", lambda: {"detector": [{"name": "rebuilt"}]})
    assert plugin_index.listing()["detector"] == [{"name": "rebuilt"}]


def test_list_command_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys; from benchmark.cli import main; main(['list']); "
            "assert 'torch' not in sys.modules, 'list imported torch'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "error_map" in out.stdout
