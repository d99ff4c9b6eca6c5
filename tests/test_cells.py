from pathlib import Path

import pytest

import tests.engine_plugins  # noqa: F401  (registers the test plugins)
from benchmark.cells import content_key, expand, inapplicable
from benchmark.errors import BenchmarkError, UnknownPluginError
from benchmark.registry import registry
from benchmark.suites import PluginConfig, load_suite, narrow

SUITE = """
name = "t"
seeds = [0, 1]
metrics = ["test-band-mass"]
[evaluate]
max_clips = 4
[datasets.test-blobs]
n_train = 12
[detectors.test-template]
budget = { epochs = 1 }
[explainers.error_map]
[explainers.random]
"""


def write(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def test_expand_gives_train_and_evaluate_cells(tmp_path):
    trains, evals = expand(load_suite(str(write(tmp_path))))
    assert [t.seed for t in trains] == [0, 1]
    assert [(e.train.seed, e.explainer.name) for e in evals] == [(0, "error_map"), (0, "random"),
                                                                (1, "error_map"), (1, "random")]


def test_same_config_same_key_and_params_change_it(tmp_path):
    a, _ = expand(load_suite(str(write(tmp_path))))
    b, _ = expand(load_suite(str(write(tmp_path))))
    assert [t.key for t in a] == [t.key for t in b]
    assert a[0].key != a[1].key  # seed
    c, _ = expand(load_suite(str(write(tmp_path, SUITE.replace("n_train = 12", "n_train = 13")))))
    assert c[0].key != a[0].key
    d, _ = expand(load_suite(str(write(tmp_path, SUITE.replace("epochs = 1", "epochs = 2")))))
    assert d[0].key != a[0].key


def test_key_changes_with_adapter_source(tmp_path, monkeypatch):
    trains, evals = expand(load_suite(str(write(tmp_path))))
    before_train, before_evals = trains[0].key, [e.key for e in evals]
    plugin_cls = type(registry("explainer").get("random"))
    original = plugin_cls.source_hash
    edited = lambda self: "edited-source" if self.name == "random" else original(self)  # noqa: E731
    monkeypatch.setattr(plugin_cls, "source_hash", edited)
    trains, evals = expand(load_suite(str(write(tmp_path))))
    assert trains[0].key == before_train  # the detector's cell does not depend on the explainer
    changed = [e.explainer.name for e, k in zip(evals, before_evals, strict=True) if e.key != k]
    assert changed == ["random", "random"]


def test_content_key_is_order_independent():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})


def test_unknown_plugin_in_suite_has_did_you_mean(tmp_path):
    with pytest.raises(UnknownPluginError, match="did you mean 'error_map'"):
        load_suite(str(write(tmp_path, SUITE.replace("[explainers.error_map]", "[explainers.eror_map]"))))


def test_malformed_suite_and_bad_keys(tmp_path):
    with pytest.raises(BenchmarkError, match="not valid TOML"):
        load_suite(str(write(tmp_path, "name = [")))
    with pytest.raises(BenchmarkError, match="unknown key"):
        load_suite(str(write(tmp_path, "foo = 1\n" + SUITE)))
    with pytest.raises(BenchmarkError, match="has no parameter 'n_trian'"):
        load_suite(str(write(tmp_path, SUITE.replace("n_train", "n_trian"))))
    with pytest.raises(BenchmarkError, match="unknown budget key"):
        load_suite(str(write(tmp_path, SUITE.replace("epochs = 1", "epoch = 1"))))
    with pytest.raises(BenchmarkError, match="unknown suite 'nope'"):
        load_suite("nope")


def test_narrow_filters_and_validates(tmp_path):
    suite = load_suite(str(write(tmp_path)))
    small = narrow(suite, explainers=["random"], seeds=[1])
    assert [e.name for e in small.explainers] == ["random"] and small.seeds == (1,)
    with pytest.raises(UnknownPluginError):
        narrow(suite, detectors=["no_such_detector"])
    with pytest.raises(BenchmarkError, match="not in suite"):
        narrow(suite, detectors=["dense_ae"])
    with pytest.raises(BenchmarkError, match="seed"):
        narrow(suite, seeds=[7])


def test_evaluate_seeds_explain_a_subset_and_train_every_seed(tmp_path):
    text = SUITE.replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
    text = text.replace("max_clips = 4", "max_clips = 4\nseeds = [2, 0]")
    suite = load_suite(str(write(tmp_path, text)))
    trains, evals = expand(suite)
    assert [t.seed for t in trains] == [0, 1, 2]
    assert [(e.train.seed, e.explainer.name) for e in evals] == [(0, "error_map"), (0, "random"),
                                                                (2, "error_map"), (2, "random")]
    # the explained seeds stay out of the cells' settings: seed 0's cells keep the keys they have without it
    _, plain = expand(load_suite(str(write(tmp_path, SUITE.replace("seeds = [0, 1]", "seeds = [0, 1, 2]")))))
    assert [e.key for e in evals if e.train.seed == 0] == [e.key for e in plain if e.train.seed == 0]
    # --seeds keeps the explained subset (and the precision): seed 1 trains only
    assert expand(narrow(suite, seeds=[1]))[1] == []
    with pytest.raises(BenchmarkError, match=r"\[evaluate\] seeds \[5\] are not among the suite's seeds"):
        load_suite(str(write(tmp_path, text.replace("seeds = [2, 0]", "seeds = [5]"))))
    with pytest.raises(BenchmarkError, match=r"\[evaluate\] seeds must be a non-empty list"):
        load_suite(str(write(tmp_path, text.replace("seeds = [2, 0]", "seeds = []"))))


def test_a_file_that_sets_seeds_narrows_the_included_suites_explained_seeds(tmp_path):
    base = SUITE.replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
    base = base.replace("max_clips = 4", "max_clips = 4\nseeds = [2, 0]")
    (tmp_path / "base.toml").write_text(base)
    own = tmp_path / "own.toml"
    own.write_text('include = "base.toml"\nseeds = [0, 1]\n')
    suite = load_suite(str(own))
    assert suite.seeds == (0, 1) and suite.explain_seeds == (0,)
    assert [(e.train.seed, e.explainer.name) for e in expand(suite)[1]] == [(0, "error_map"), (0, "random")]
    own.write_text('include = "base.toml"\nseeds = [1]\n')
    with pytest.raises(BenchmarkError, match=r"seeds \[1\] include none of the explained seeds \[2, 0\]"):
        load_suite(str(own))
    # the file's own [evaluate] seeds decide again, and must be among its seeds
    own.write_text('include = "base.toml"\nseeds = [1]\n[evaluate]\nseeds = [1]\n')
    assert load_suite(str(own)).explain_seeds == (1,)
    own.write_text('include = "base.toml"\nseeds = [1]\n[evaluate]\nseeds = [0]\n')
    with pytest.raises(BenchmarkError, match=r"\[evaluate\] seeds \[0\] are not among the suite's seeds \[1\]"):
        load_suite(str(own))
    # an [evaluate] seed the included suite does not train is still an error
    own.write_text('include = "base.toml"\n[evaluate]\nseeds = [4]\n')
    with pytest.raises(BenchmarkError, match=r"\[evaluate\] seeds \[4\] are not among"):
        load_suite(str(own))
    # the committed full suite (seeds 0-4, explained 0-2) narrowed by a file to seed 0
    own.write_text(f'include = "{Path("tasks/suites/full.toml").resolve()}"\nseeds = [0]\n')
    full = load_suite(str(own))
    assert full.seeds == (0,) and full.explain_seeds == (0,)


def test_narrow_keeps_the_suites_precision(tmp_path):
    suite = load_suite(str(write(tmp_path, 'precision = "bf16"\n' + SUITE)))
    assert narrow(suite, seeds=[1], explainers=["random"]).precision == "bf16"
    assert {t.precision for t in expand(narrow(suite, seeds=[1]))[0]} == {"bf16"}


def test_inapplicable_explainer_gets_a_reason():
    error_map = PluginConfig("explainer", "error_map")
    assert inapplicable(error_map, PluginConfig("detector", "test-template"), set()) is None
    reason = inapplicable(error_map, PluginConfig("detector", "test-scorer"), set())
    assert reason == "error_map needs reconstruction but detector test-scorer lacks capability 'reconstructs'"


def test_an_explainer_can_be_limited_to_some_detectors(tmp_path):
    text = SUITE.replace("[explainers.random]",
                         '[detectors.test-scorer]\n[explainers.random]\ndetectors = ["test-scorer"]')
    _, evals = expand(load_suite(str(write(tmp_path, text))))
    pairs = [(e.train.detector.name, e.explainer.name) for e in evals if e.train.seed == 0]
    assert pairs == [("test-template", "error_map"), ("test-scorer", "error_map"), ("test-scorer", "random")]
    # the limit says where a cell runs, not what it computes: the shared cell keeps its key
    _, unlimited = expand(load_suite(str(write(tmp_path, text.replace('detectors = ["test-scorer"]', "")))))
    keyed = {(e.train.detector.name, e.explainer.name, e.train.seed): e.key for e in unlimited}
    assert all(keyed[(e.train.detector.name, e.explainer.name, e.train.seed)] == e.key for e in evals)
    with pytest.raises(UnknownPluginError, match="test-scorr"):
        load_suite(str(write(tmp_path, text.replace('["test-scorer"]', '["test-scorr"]'))))
    with pytest.raises(BenchmarkError, match="non-empty list"):
        load_suite(str(write(tmp_path, text.replace('["test-scorer"]', '"test-scorer"'))))


def test_an_interpreter_learnt_without_the_detector_is_shared_by_every_detector(tmp_path):
    text = SUITE.replace("[explainers.random]", "[detectors.test-scorer]\n[explainers.encodec_latent]")
    _, evals = expand(load_suite(str(write(tmp_path, text))))
    codec = {(e.train.detector.name, e.train.seed): e.interpreter_key for e in evals
             if e.explainer.name == "encodec_latent"}
    assert codec[("test-template", 0)] == codec[("test-scorer", 0)] != codec[("test-template", 1)]
    lmac = SUITE.replace("[explainers.random]", "[detectors.test-scorer]\n[explainers.lmac]")
    _, evals = expand(load_suite(str(write(tmp_path, lmac))))
    keys = {e.train.detector.name: e.interpreter_key for e in evals if e.explainer.name == "lmac" and e.train.seed == 0}
    assert keys["test-template"] != keys["test-scorer"]


def test_training_groups_are_machine_section_and_recording_group():
    from benchmark.workspace import group_index
    meta = [{"machine": "fan", "section": "00"}, {"machine": "pump", "section": "00", "attributes": {"speed": "3"}},
            {"machine": "planer", "section": "00", "attributes": {"group": "2x6"}},
            {"machine": "planer", "section": "00", "attributes": {"group": "2x3"}},
            {"machine": "fan", "section": "00", "attributes": {}}]
    index, classes = group_index(meta)
    assert classes == ["fan/00", "planer/00/2x3", "planer/00/2x6", "pump/00"]
    assert index.tolist() == [0, 3, 2, 1, 0]


@pytest.mark.parametrize("name", ["smoke", "quick", "full", "controls"])
def test_committed_suites_load_and_expand(name):
    trains, evals = expand(load_suite(name))
    assert trains and evals and all(e.train in trains for e in evals)


def test_the_controls_suite_reuses_the_quick_machine_detectors():
    quick = {(t.dataset.name, t.detector.name): t for t in expand(load_suite("quick"))[0]}
    controls = {(t.dataset.name, t.detector.name): t for t in expand(load_suite("controls"))[0]}
    assert {d for _, d in controls} == {"ae", "mae", "dense_ae"}
    for (dataset, detector), cell in controls.items():
        twin = quick[dataset, detector]
        if dataset == "synthetic-machines":
            assert cell.key == twin.key
        else:  # the planer test set is grown to 120 anomalous clips; the detector's budget and params stay
            assert cell.key != twin.key and cell.detector == twin.detector
            assert cell.dataset.params == {**twin.dataset.params, "test_anomaly": 120}


def test_key_changes_with_the_synthetic_recipe(tmp_path, monkeypatch):
    import adapters.datasets._synthesis as synthesis

    def train_keys() -> list[str]:
        suite = write(tmp_path, SUITE.replace("[datasets.test-blobs]\nn_train = 12",
                                              '[datasets.synthetic-planer]\nsize = "tiny"'))
        return [t.key for t in expand(load_suite(str(suite)))[0]]

    before = train_keys()
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = (synthesis.RECIPES_DIR / "synthetic-planer.toml").read_text()
    monkeypatch.setattr(synthesis, "RECIPES_DIR", recipes)
    (recipes / "synthetic-planer.toml").write_text(text)
    assert train_keys() == before  # same bytes, same cells
    assert "duration_median_s = 1.2" in text
    (recipes / "synthetic-planer.toml").write_text(text.replace("duration_median_s = 1.2", "duration_median_s = 1.3"))
    after = train_keys()
    assert len(after) == 2 and not set(after) & set(before)


def test_an_explainer_max_clips_explains_a_nested_subset(tmp_path):
    text = SUITE.replace("[explainers.random]", "[explainers.random]\nmax_clips = 2")
    suite = load_suite(str(write(tmp_path, text)))
    _, evals = expand(suite)
    clips = {(e.explainer.name, e.train.seed): dict(e.evaluate)["max_clips"] for e in evals}
    assert clips == {("error_map", 0): 4, ("error_map", 1): 4, ("random", 0): 2, ("random", 1): 2}
    # the error map's cells keep the keys they had; the first clips of the same shuffle are the random map's
    _, plain = expand(load_suite(str(write(tmp_path))))
    assert [e.key for e in evals if e.explainer.name == "error_map"] == [
        e.key for e in plain if e.explainer.name == "error_map"]
    import torch

    from benchmark.dataset import ClipTable
    from benchmark.explain_step import select_clips
    table = ClipTable([str(i) for i in range(10)], torch.zeros(10, 1, 2, 2), torch.ones(10, dtype=torch.long),
                      [{}] * 10, None, None, None, None, torch.ones(10, dtype=torch.bool))
    few, many = (select_clips(table, {"clips": "anomalous", "max_clips": k}, 0) for k in (2, 4))
    assert set(few.tolist()) < set(many.tolist())
    with pytest.raises(BenchmarkError, match="max_clips must be an integer >= 1"):
        load_suite(str(write(tmp_path, SUITE.replace("[explainers.random]", "[explainers.random]\nmax_clips = 0"))))


def test_a_train_cell_charges_the_passes_its_loop_ran(tmp_path):
    from benchmark.store import Store
    from benchmark.training import training_passes
    from tests.engine_plugins import run_suite_text
    assert training_passes(3, 20, 2, 8) == {"passes_forward": 66 + 10, "passes_backward": 60}
    run_suite_text(tmp_path, SUITE.replace("seeds = [0, 1]", "seeds = [0]"))
    store = Store(tmp_path / "runs")
    cost = store.status(store.suite_manifest("t")["train"][0])["cost"]
    # the template learns nothing (0 epochs): 12 normal clips, one held out for calibration, 8 test clips
    assert (cost["passes_forward"], cost["passes_backward"]) == (1 + 8, 0)
