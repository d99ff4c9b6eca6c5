"""Conformance of every registered detector x every applicable explainer (timm-style: parametrized over
the registry itself), the checker's own ability to catch broken adapters, and the documented example.

Plugins named 'test-*' are the engine's deliberately broken fixtures and are left out of the sweep.
"""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

from benchmark import conformance
from benchmark.errors import UnknownPluginError
from benchmark.explainer import Explainer
from benchmark.registry import explainers, registry
from benchmark.types import Explanation

DOC = Path(__file__).resolve().parent.parent / "docs" / "adding-an-explainer.md"


def _names(kind: str) -> list[str]:
    return [n for n in registry(kind).names() if not n.startswith("test-")]


@pytest.fixture(scope="session")
def data() -> conformance.ConformanceData:
    return conformance.conformance_data()


@pytest.fixture(scope="session")
def trained(data):
    """Detectors trained once per session, by name."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = conformance.trained_detector(name, data)
        return cache[name]

    return get


@pytest.mark.parametrize("detector", _names("detector"))
def test_detector_conforms(detector, data, trained):
    assert conformance.detector_problems(detector, trained(detector), data) == []


@pytest.mark.parametrize("explainer", _names("explainer"))
@pytest.mark.parametrize("detector", _names("detector"))
def test_explainer_conforms_on_detector(detector, explainer, data, trained):
    outcome = conformance.check_pair(detector, trained(detector), explainer, data)
    if outcome.status == "skip":
        pytest.skip(outcome.detail)
    assert outcome.status == "ok", outcome.detail


def test_inapplicable_pairs_are_skipped_with_the_reason(data, trained):
    outcome = conformance.check_pair("dense_ae", trained("dense_ae"), "grad_cam", data)
    assert outcome.status == "skip"
    assert outcome.detail == "grad_cam needs layers but detector dense_ae lacks capability 'layers'"


# --- the checker catches what it promises to catch ----------------------------------------------------


@explainers.register("test-leaves-gradients", summary="conformance tests: backward() onto the detector")
class LeavesGradients(Explainer):
    def explain(self, detector, batch, *, generator):
        x = batch.x.clone().requires_grad_()
        detector.score(x).sum().backward()
        return Explanation(attribution=x.grad[:, 0].abs())


@explainers.register("test-global-rng", summary="conformance tests: ignores the generator")
class GlobalRng(Explainer):
    def explain(self, detector, batch, *, generator):
        return Explanation(attribution=torch.rand(batch.x[:, 0].shape, device=batch.x.device))


@explainers.register("test-trains-detector", summary="conformance tests: switches to train mode, edits a buffer")
class TrainsDetector(Explainer):
    def explain(self, detector, batch, *, generator):
        detector.train()
        detector.tau += 1.0
        return Explanation(attribution=batch.x[:, 0].clone())


@explainers.register("test-fixed-seed", summary="conformance tests: declared stochastic, seeds itself", stochastic=True)
class FixedSeed(Explainer):
    def explain(self, detector, batch, *, generator):
        g = torch.Generator().manual_seed(0)
        return Explanation(attribution=torch.rand(batch.x[:, 0].shape, generator=g).to(batch.x.device))


@explainers.register("test-nan-map", summary="conformance tests: NaN map and a negative pass count")
class NanMap(Explainer):
    def explain(self, detector, batch, *, generator):
        return Explanation(attribution=torch.full_like(batch.x[:, 0], float("nan")), forward_passes=-1)


@explainers.register("test-wrong-shape", summary="conformance tests: one map for the whole batch")
class WrongShape(Explainer):
    def explain(self, detector, batch, *, generator):
        return Explanation(attribution=batch.x[0, 0].clone())


@pytest.mark.parametrize("explainer, problem", [
    ("test-leaves-gradients", "gradients left on detector parameters"),
    ("test-global-rng", "same generator seed give different maps"),
    ("test-trains-detector", "weights/buffers changed: tau; detector train/eval mode changed"),
    ("test-fixed-seed", "declared stochastic, but another generator seed gives the same map"),
    ("test-nan-map", "non-finite values; forward_passes = -1"),
    ("test-wrong-shape", "attribution has shape (128, 16), want (3, 128, 16)"),
])
def test_checker_reports_broken_explainers_and_repairs_the_detector(explainer, problem, data, trained):
    det = trained("dense_ae")
    tau = det.tau.clone()
    outcome = conformance.check_pair("dense_ae", det, explainer, data)
    assert outcome.status == "FAIL" and problem in outcome.detail, outcome.detail
    assert not any(m.training for m in det.modules()) and torch.equal(det.tau, tau)
    assert all(p.grad is None for p in det.parameters())


def test_check_runs_a_selection_and_summarises(monkeypatch):
    monkeypatch.setattr(conformance, "selection", lambda kind, name: (["dense_ae"], ["energy", "grad_cam",
                                                                                     "test-global-rng"]))
    ok, report = conformance.check("detector", "dense_ae")
    lines = report.splitlines()
    assert [line.split(" (")[0] for line in lines[:-1]] == [
        "ok   dense_ae", "ok   dense_ae x energy", "skip dense_ae x grad_cam", "FAIL dense_ae x test-global-rng"]
    assert "lacks capability 'layers'" in lines[2] and "different maps" in lines[3]
    assert not ok and lines[-1] == "2 passed, 1 skipped, 1 failed"


def test_check_finds_a_plugin_by_bare_name_and_suggests_close_names(monkeypatch):
    seen = []
    monkeypatch.setattr(conformance, "selection", lambda kind, name: seen.append((kind, name)) or ([], []))
    conformance.check("energy")
    assert seen == [("explainer", "energy")]
    monkeypatch.undo()
    assert conformance.selection("explainer", "energy") == (registry("detector").names(), ["energy"])
    assert conformance.selection("detectors", "ae") == (["ae"], registry("explainer").names())
    with pytest.raises(UnknownPluginError, match="did you mean 'saliency'"):
        conformance.selection("explainer", "salency")


def test_the_documented_example_adapter_conforms(data, trained, monkeypatch):
    """The doc's code block, executed as a module, registers an explainer that passes the checks."""
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.setattr(explainers, "_plugins", dict(explainers._plugins))  # registration undone after the test
    before = set(explainers._plugins)
    exec(compile(block, str(DOC), "exec"), {"__name__": "docs_example"})
    (name,) = set(explainers._plugins) - before
    for detector in ("dense_ae", "ae"):
        if detector in _names("detector"):
            outcome = conformance.check_pair(detector, trained(detector), name, data)
            assert outcome.status == "ok", outcome.detail


# --- metrics and datasets: the same registry-parametrized sweep --------------------------------------

@pytest.mark.parametrize("metric", _names("metric"))
def test_metric_conforms(metric, data, trained):
    used, problems = conformance.metric_problems(metric, trained(conformance.METRIC_DETECTOR), data)
    assert problems == [], f"{metric} on {used}: {problems}"


@pytest.mark.parametrize("dataset", [n for n in _names("dataset") if not conformance.reads_from_disk(n)])
def test_generated_dataset_conforms(dataset):
    counts, problems = conformance.dataset_problems(dataset)
    assert problems == [] and counts == f"train {conformance.DATASET_CLIPS}, test {conformance.DATASET_CLIPS}"


def test_checker_reports_a_broken_metric_and_a_broken_dataset(data, trained, monkeypatch):
    from benchmark.dataset import Dataset
    from benchmark.metrics.context import MetricResult
    from benchmark.registry import datasets, metrics
    from benchmark.types import Clip

    @metrics.register("test-wrong-shape", summary="returns [B, 2]", version=1, family="localisation",
                      higher_is_better=True)
    def wrong_shape(ctx):
        return MetricResult(values={"": torch.zeros(len(ctx.batch), 2)})

    @datasets.register("test-anomalous-train", summary="labels a training clip anomalous", version=1)
    class AnomalousTrain(Dataset):
        spec = conformance.SPEC

        def clips(self, split):
            for i in range(2):
                yield Clip(id=f"m/{i}", split=split, label=1, sample_rate=self.spec.sample_rate,
                           waveform=torch.zeros(self.spec.n_samples))

    _, problems = conformance.metric_problems("test-wrong-shape", trained("dense_ae"), data)
    assert problems == ["[] has shape (3, 2), want (3,)"]
    _, problems = conformance.dataset_problems("test-anomalous-train")
    assert any("anomalous training clip" in p for p in problems) and any("id repeated" in p for p in problems)
    assert "provides waveform but does not declare it: add it to capabilities= in the registration" in problems


def test_check_of_one_explainer_trains_only_the_named_detector():
    ok, report = conformance.check("explainer", "energy", detector="dense_ae")
    assert ok and [line.split(" (")[0] for line in report.splitlines()[:-1]] == ["ok   dense_ae",
                                                                               "ok   dense_ae x energy"]
    ok, report = conformance.check("dataset", "dcase")
    assert ok and report.startswith("skip dcase") and "reads data from disk" in report
    with pytest.raises(Exception, match="neither a plugin kind"):
        conformance.check("datset")


def test_the_docs_suite_includes_starter_and_adds_the_example(tmp_path, monkeypatch):
    """The adding-an-explainer doc's suite: starter's cells (same keys) plus the new explainer on dense_ae."""
    from benchmark.cells import expand
    from benchmark.suites import load_suite
    text = DOC.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.setattr(explainers, "_plugins", dict(explainers._plugins))
    # a module with a file, as a user's package has: cell keys hash the plugin's source
    (tmp_path / "docs_suite_example.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "docs_suite_example", raising=False)
    importlib.import_module("docs_suite_example")
    suite_text = re.search(r"```toml\n(# my-study.toml.*?)```", text, re.S).group(1)
    (tmp_path / "my-study.toml").write_text(suite_text)
    mine, starter = load_suite(str(tmp_path / "my-study.toml")), load_suite("starter")
    assert mine.name == "my-study" and mine.seeds == starter.seeds and mine.evaluate == starter.evaluate
    assert [e.name for e in mine.explainers] == [e.name for e in starter.explainers] + ["input_x_gradient"]
    assert mine.explainers[-1].params == {"absolute": True} and mine.explainers[-1].only_detectors == ("dense_ae",)
    trains, evals = expand(mine)
    base_trains, base_evals = expand(starter)
    assert [t.key for t in trains] == [t.key for t in base_trains]
    assert {e.key for e in base_evals} < {e.key for e in evals}
    assert {e.label for e in evals} - {e.label for e in base_evals} == {
        f"evaluate {t.dataset.label} / dense_ae / input_x_gradient / seed {t.seed}" for t in base_trains
        if t.detector.name == "dense_ae"}
    assert mine.file_hash() != starter.file_hash() and len(mine.files) == 2
