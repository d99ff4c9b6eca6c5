"""The plugin contract: every registered plugin of every kind holds a valid frozen spec, its defaults are its
signature's, its needs resolve; bad registrations are one-line errors naming the plugin and the key."""
from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch

from benchmark.dataset import Dataset
from benchmark.detector import Detector
from benchmark.errors import BenchmarkError
from benchmark.explainer import Explainer
from benchmark.needs import (
    CAPABILITY_OF,
    DATASET_NEEDS,
    Need,
    Source,
    explainer_unmet,
    metric_unmet,
    needs_live,
    source,
)
from benchmark.registry import KINDS, Registry, registry
from benchmark.specs import FAMILIES, ContractError, DatasetSpec, DetectorSpec, ExplainerSpec, MetricSpec
from benchmark.types import Explanation

SPEC_OF = {"dataset": DatasetSpec, "detector": DetectorSpec, "explainer": ExplainerSpec, "metric": MetricSpec}
BASE_OF = {"dataset": Dataset, "detector": Detector, "explainer": Explainer}
PLUGINS = [(kind, name) for kind in KINDS for name in registry(kind).names()]


def keyword_defaults(factory, skip_first: bool) -> dict:
    """The reference: a factory's keyword defaults read straight off its signature."""
    params = list(inspect.signature(factory).parameters.values())[1 if skip_first else 0:]
    return {p.name: p.default for p in params
            if p.default is not inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def test_every_kind_has_registered_plugins():
    counts = {kind: sum(k == kind for k, _ in PLUGINS) for kind in KINDS}
    assert counts["dataset"] >= 4 and counts["detector"] >= 4 and counts["explainer"] >= 13 and counts["metric"] >= 40


@pytest.mark.parametrize("kind, name", PLUGINS)
def test_registered_plugin_holds_its_kinds_spec_and_base(kind, name):
    plugin = registry(kind).get(name)
    assert type(plugin.spec) is SPEC_OF[kind]
    if kind == "metric":
        assert not inspect.isclass(plugin.factory) and plugin.spec.family in FAMILIES
        assert isinstance(plugin.spec.higher_is_better, bool)
    else:
        assert issubclass(plugin.factory, BASE_OF[kind])
    assert all(isinstance(n, Need) for n in plugin.needs)
    accepted = inspect.signature(plugin.factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    assert takes_any or set(plugin.spec.test_params) <= set(accepted), "test_params names a parameter it lacks"


@pytest.mark.parametrize("kind, name", PLUGINS)
def test_defaults_are_the_signatures(kind, name):
    plugin = registry(kind).get(name)
    want = keyword_defaults(plugin.factory, skip_first=kind == "metric")
    assert plugin.defaults == want
    assert plugin.describe().get("defaults", {}) == want


@pytest.mark.parametrize("name", registry("explainer").names())
def test_explainer_spec_states_what_its_class_does(name):
    plugin = registry("explainer").get(name)
    cls = plugin.factory
    assert plugin.spec.trains is cls.trains and plugin.spec.fit_uses_detector is cls.fit_uses_detector
    assert (Need.TRAINING in plugin.needs) is cls.trains
    assert all(source(n) is not Source.EXPLANATION for n in plugin.needs)


@pytest.mark.parametrize("name", registry("dataset").names())
def test_dataset_capabilities_are_dataset_needs(name):
    capabilities = registry("dataset").get(name).capabilities
    assert capabilities and capabilities <= DATASET_NEEDS


def test_built_in_needs_the_issue_named():
    explainers = registry("explainer")
    assert explainers.get("encodec_latent").needs == {"gradients", "waveform", "training"}
    assert explainers.get("lmac").spec.trains and not explainers.get("encodec_latent").spec.fit_uses_detector
    assert registry("dataset").get("synthetic-machines").capabilities == {"waveform", "tf_mask", "intervals", "audio"}
    assert registry("dataset").get("synthetic-machines").defaults["difficulty"] is None
    assert registry("metric").get("event_f1").spec.headline == ("events",)
    assert registry("metric").get("ff_segment").spec.ranked is False
    assert registry("metric").get("top_k_intersection").defaults == {"top_fraction": 0.05}


def _metric(ctx, *, n: int = 3):
    raise NotImplementedError


@pytest.mark.parametrize("declared, message", [
    ({"family": "complexity", "higher_is_better": True, "familiy": "x"},
     "metric 'probe': unknown registration key 'familiy' (did you mean 'family'?); allowed: summary, version, "
     "family, higher_is_better, needs, params, headline, ranked, stochastic, test_params"),
    ({"family": "complexity", "higher_is_better": True, "higher_is_beter": False},
     "metric 'probe': unknown registration key 'higher_is_beter' (did you mean 'higher_is_better'?)"),
    ({"family": "complexity", "higher_is_better": True, "defaults": {"n": 3}},
     "metric 'probe': drop defaults=, they are read from the factory's signature"),
    ({"family": "complexity"}, "metric 'probe': declare 'higher_is_better' in the registration"),
    ({"family": "complexty", "higher_is_better": True}, "metric 'probe': family='complexty'; declare one of"),
    ({"family": "complexity", "higher_is_better": "yes"}, "metric 'probe': higher_is_better='yes'; declare True"),
    ({"family": "complexity", "higher_is_better": True, "needs": {"tf_mask", "tfmask"}},
     "metric 'probe': unknown need 'tfmask'; metrics may declare audio, embedding, explanation_audio"),
])
def test_a_bad_metric_registration_is_a_one_line_error(declared, message):
    reg = Registry("metric")
    with pytest.raises(ContractError) as caught:
        reg.register("probe", summary="probe", **declared)(_metric)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    assert "probe" not in reg._plugins


class _Map(Explainer):
    def explain(self, detector, batch, *, generator):
        raise NotImplementedError


@pytest.mark.parametrize("kind, factory, declared, message", [
    ("explainer", _Map, {"needs": {"gradient"}},
     "explainer 'probe': unknown need 'gradient'; explainers may declare audio, embedding, gradients, intervals"),
    ("explainer", _Map, {"needs": {"explanation_audio"}}, "explainer 'probe': unknown need 'explanation_audio'"),
    ("explainer", _Map, {"needs": {"training"}}, "explainer 'probe': needs 'training' but its class does not set"),
    ("explainer", _Map, {"trains": True}, "explainer 'probe': trains is read from the class"),
    ("explainer", _Map, {"stochastc": True}, "explainer 'probe': unknown registration key 'stochastc'"),
    ("explainer", type("NotAnExplainer", (), {}), {},
     "explainer 'probe': NotAnExplainer must subclass benchmark.explainer.Explainer"),
    ("detector", _Map, {}, "detector 'probe': _Map must subclass benchmark.detector.Detector"),
    ("detector", Detector, {"capabilities": {"reconstruct"}},
     "detector 'probe': unknown capability 'reconstruct'; a detector may declare embeds, layers, reconstructs"),
    ("dataset", Dataset, {"capabilities": {"waveforms"}}, "dataset 'probe': unknown need 'waveforms'"),
    ("dataset", _Map, {}, "dataset 'probe': _Map must subclass benchmark.dataset.Dataset"),
    ("metric", _Map, {"family": "lmac", "higher_is_better": True}, "metric 'probe': register a function"),
])
def test_a_bad_registration_of_any_kind_names_the_plugin_and_the_fix(kind, factory, declared, message):
    with pytest.raises(ContractError) as caught:
        Registry(kind).register("probe", summary="probe", **declared)(factory)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_registration_errors_are_benchmark_errors():
    assert issubclass(ContractError, BenchmarkError) and issubclass(ContractError, ValueError)


def test_spec_is_frozen_and_listed_without_its_defaults():
    plugin = registry("metric").get("ff")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plugin.spec.family = "other"
    assert plugin.extra == {"family": "faithfulness", "higher_is_better": True, "params": "percentile"}
    assert json.loads(json.dumps(registry("explainer").get("grad_cam").describe()))["needs"] == ["gradients",
                                                                                                   "layers"]


def test_need_is_a_string():
    assert Need.TF_MASK == "tf_mask" and json.dumps(sorted({Need.WAVEFORM, Need.AUDIO})) == '["audio", "waveform"]'
    assert {n for n in Need if source(n) is Source.DETECTOR} == set(CAPABILITY_OF)


def test_one_resolver_phrases_what_is_missing():
    assert explainer_unmet("grad_cam", {Need.GRADIENTS, Need.LAYERS}, "dense_ae", {"reconstructs"}, set()) == \
        "grad_cam needs layers but detector dense_ae lacks capability 'layers'"
    assert explainer_unmet("lmac", {Need.WAVEFORM, Need.TRAINING}, "ae", {"layers"}, {Need.TF_MASK}) == \
        "lmac needs waveform, which the dataset does not provide"
    assert explainer_unmet("lmac", {Need.WAVEFORM, Need.TRAINING}, "ae", {"layers"}, {"waveform"}) is None
    plain = Explanation(attribution=torch.zeros(1, 2, 2))
    assert metric_unmet({Need.AUDIO, Need.EXPLANATION_AUDIO}, {"audio"}, plain, set()) == \
        "needs a listenable explanation, which this explainer does not return"
    assert metric_unmet({Need.TF_MASK}, {"intervals"}, plain, set()) == \
        "needs tf_mask, which the dataset does not provide"
    assert metric_unmet({Need.EXPLANATION_LATENT}, set(), plain, set()) == \
        "needs the explainer's latent, which this explainer does not return"
    assert metric_unmet({Need.EXPLANATION_SYNTHESIS}, set(), plain, set(), live_only=("synthesis",)) is None
    assert metric_unmet({Need.RECONSTRUCTION}, set(), plain, {"layers"}) == "needs a reconstructing detector"
    assert needs_live({Need.EXPLANATION_SYNTHESIS}, ("synthesis",)) and not needs_live({Need.AUDIO}, ("audio",))
