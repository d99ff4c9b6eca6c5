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
    reg.register("m", summary="one")(lambda ctx: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("m", summary="two")(lambda ctx: None)


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
