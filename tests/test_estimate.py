"""The cost estimate: interpreter training priced once per interpreter, by its clip budget and epoch cap."""
import pytest

from benchmark.cells import expand
from benchmark.estimate import estimate_suite
from benchmark.suites import load_suite

SUITE = """
name = "e"
seeds = [0]
metrics = ["ff"]
[evaluate]
max_clips = 4
[datasets.synthetic-machines]
size = "tiny"
[detectors.dense_ae]
[detectors.ae]
[explainers.saliency]
[explainers.encodec_latent]
n_steps = 10
train_clips = 20
budget = { epochs = 3 }
[explainers.lmac]
train_clips = 20
budget = { epochs = 2 }
"""
REF = {"train": {"dense_ae": 1e-5, "ae": 1e-4},
       "explainer_params": {"encodec_latent": {"n_steps": 5}},
       "fit": {"dense_ae/encodec_latent": 1e-3, "ae/lmac": 2e-3, "dense_ae/lmac": 4e-3},
       "evaluate": {"dense_ae/saliency": 1e-4, "ae/saliency": 2e-4, "dense_ae/encodec_latent": 1e-2,
                    "ae/encodec_latent": 3e-2, "dense_ae/lmac": 1e-3, "ae/lmac": 1e-3}}


def test_interpreters_are_priced_once_by_clip_budget_and_epochs(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    est = estimate_suite(suite, REF)
    trains, evals = expand(suite)
    frames = suite.datasets[0].plugin.factory(**suite.datasets[0].params).spec.n_frames
    n_train = trains[0].dataset.plugin.factory(**trains[0].dataset.params).counts()["train"]
    clips = min(20, n_train) * 0.9
    codec = 1e-3 * 3 * clips * frames           # one codec for both detectors (it learns without them)
    lmac = (2e-3 + 4e-3) * 2 * clips * frames   # one interpreter per detector
    assert est.by_kind["interpreter training"] == pytest.approx(codec + lmac)
    by_cell = {(c.train.detector.name, c.explainer.name): est.seconds[c.key] for c in evals}
    pool = 4 * frames
    # the ae cell reuses the dense_ae cell's codec: explanation only, n_steps scaled 10 / 5
    assert by_cell[("ae", "encodec_latent")] == pytest.approx(3e-2 * 2 * pool)
    assert by_cell[("dense_ae", "encodec_latent")] == pytest.approx(1e-2 * 2 * pool + codec)
    assert by_cell[("ae", "lmac")] == pytest.approx(1e-3 * pool + 2e-3 * 2 * clips * frames)


FLOPS = {"dense_ae": {"forward": 10.0, "backward_input": 20.0, "backward_train": 30.0},
         "ae": {"forward": 100.0, "backward_input": 300.0, "backward_train": 500.0}}
PASSES = {"dense_ae/saliency": {"forward": 2.0, "backward": 1.0}, "ae/saliency": {"forward": 4.0, "backward": 1.0},
          "dense_ae/encodec_latent": {"forward": 30.0, "backward": 0.0},
          "ae/encodec_latent": {"forward": 40.0, "backward": 0.0},
          "dense_ae/lmac": {"forward": 10.0, "backward": 0.0}, "ae/lmac": {"forward": 12.0, "backward": 0.0}}


def test_gpu_flops_count_each_cells_detector_passes(tmp_path):
    from benchmark.estimate import dataset_counts
    from benchmark.holdout import held_out_split
    path = tmp_path / "e.toml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    est = estimate_suite(suite, {**REF, "flops": FLOPS, "passes": PASSES}, gpu_tflops=2.0)
    trains, evals = expand(suite)
    n = dataset_counts(suite.datasets[0])
    bins = n["bins"]
    assert bins == suite.datasets[0].plugin.factory(**suite.datasets[0].params).spec.n_mels * n["frames"]
    fit, val = held_out_split(n["train"], 0)
    for cell in trains:  # every epoch: forward + training backward of the fit clips, forward of the held-out ones
        f = FLOPS[cell.detector.name]
        epochs = cell.detector.budget.epochs
        forward = epochs * (len(fit) + len(val)) + len(val) + n["test"]
        assert est.flops[cell.key] == pytest.approx(bins * (forward * f["forward"]
                                                            + epochs * len(fit) * f["backward_train"]))
    clips = min(20, n["train"]) * 0.9
    by_cell = {(c.train.detector.name, c.explainer.name): est.flops[c.key] for c in evals}
    assert by_cell[("ae", "saliency")] == pytest.approx(4 * bins * (4 * 100.0 + 1 * 300.0))
    # n_steps 10 against the reference's 5 doubles the passes; the codec learns without the detector
    assert by_cell[("ae", "encodec_latent")] == pytest.approx(2 * 4 * bins * 40 * 100.0)
    assert by_cell[("dense_ae", "encodec_latent")] == pytest.approx(2 * 4 * bins * 30 * 10.0)
    # an interpreter trained against the detector: a forward and an input-gradient pass per clip and epoch
    assert by_cell[("ae", "lmac")] == pytest.approx(4 * bins * 12 * 100.0 + 2 * clips * bins * (100.0 + 300.0))
    assert est.gpu_hours == pytest.approx(sum(est.flops.values()) / 2e12 / 3600)
    assert f"{est.gpu_hours:.3g} GPU-hours" in est.summary("cpu") and "at 2 TFLOP/s" in est.summary("cpu")
    assert not estimate_suite(suite, REF).flops  # a reference without FLOPs gives no GPU figure


def test_pass_reference_averages_cold_cells_by_their_clips(tmp_path):
    from benchmark.estimate import pass_reference
    path = tmp_path / "cost.csv"
    path.write_text("cell,detector,explainer,n_clips,explanation,explainer_forward,explainer_backward,"
                    "metric_forward,metric_backward,score_forward\n"
                    "train,ae,-,,,,,,,\n"
                    "evaluate,ae,saliency,10,computed,1,1,5,0,1\n"
                    "evaluate,ae,saliency,30,computed,1,1,9,2,1\n"
                    "evaluate,ae,lmac,8,stored,0,0,20,0,1\n")
    ref = pass_reference(path)
    assert ref == {"ae/saliency": {"forward": pytest.approx((7 * 10 + 11 * 30) / 40),
                                   "backward": pytest.approx((1 * 10 + 3 * 30) / 40)}}


METRIC_SUITE = """
name = "m"
seeds = [0]
metrics = ["ff", "randomisation_spearman", "infidelity", "agreement"]
[metric_params.randomisation_spearman]
n_steps = 6
[metric_params.infidelity]
n_perturb_samples = 2
[metric_clips]
sanity = 3
[evaluate]
max_clips = 8
[datasets.synthetic-machines]
size = "tiny"
[detectors.ae]
[detectors.dense_ae]
[explainers.smoothgrad]
nt_samples = 20
[explainers.saliency]
"""
METRIC_REF = {"train": {"ae": 1e-4, "dense_ae": 1e-5}, "fit": {},
              "explainer_params": {"smoothgrad": {"nt_samples": 10}},
              "evaluate": {"ae/smoothgrad": 1e-3, "dense_ae/smoothgrad": 3e-3, "ae/saliency": 1e-4},
              "metric_params": {"randomisation_spearman": {"n_steps": 2}, "infidelity": {"n_perturb_samples": 4}},
              # agreement was measured on the codec's pair only: on a gradient map it does not apply
              "metrics": {"ae/smoothgrad": {"ff": 1e-4, "randomisation_spearman": 5e-3, "infidelity": 2e-4},
                          "dense_ae/smoothgrad": {"ff": 3e-4, "randomisation_spearman": 7e-3, "infidelity": 4e-4},
                          "ae/encodec_latent": {"agreement": 9e-3}}}


def test_each_metric_is_priced_on_its_own_clips_and_parameters(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(METRIC_SUITE)
    suite = load_suite(str(path))
    est = estimate_suite(suite, METRIC_REF)
    _, evals = expand(suite)
    from benchmark.estimate import dataset_counts
    n = dataset_counts(suite.datasets[0])
    clips, frames = min(8, n["test_anomalous"]), n["frames"]
    assert clips > 3  # the sanity budget below is a real subset
    by_cell = {(c.train.detector.name, c.explainer.name): est.seconds[c.key] for c in evals}
    work = 20 / 10  # smoothgrad's samples against the reference's
    expected = frames * (1e-3 * work * clips                    # explaining and scoring, every explained clip
                         + 1e-4 * clips                          # ff: every clip, no work parameter
                         + 5e-3 * (6 / 2) * work * 3             # re-explains: its steps and the explainer's work,
                         + 2e-4 * (2 / 4) * clips)               # on its 3 clips; infidelity: its samples only
    assert by_cell[("ae", "smoothgrad")] == pytest.approx(expected)
    # an explainer the metric rates never saw: each metric at its median over every pair (agreement: 0, as on
    # two of the three), the pair's own evaluate rate kept
    assert by_cell[("ae", "saliency")] == pytest.approx(frames * (1e-4 * clips + 1e-4 * clips + 5e-3 * 3 * 3
                                                                  + 2e-4 * 0.5 * clips))
    assert by_cell[("dense_ae", "smoothgrad")] > by_cell[("ae", "smoothgrad")]
    assert not est.unpriced


def test_a_metric_the_reference_never_ran_is_priced_at_the_median_and_named(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(METRIC_SUITE.replace('"agreement"', '"deletion_auc"'))
    suite = load_suite(str(path))
    est = estimate_suite(suite, METRIC_REF)
    assert est.unpriced == {"deletion_auc"}
    assert "no measured rate for deletion_auc" in est.summary("cpu")


def _reaches_explain(fn, seen=None) -> bool:
    """Whether `fn`, or a first-party function it calls by name, runs the explainer (`ctx.explain`)."""
    import inspect
    seen = set() if seen is None else seen
    if fn in seen:
        return False
    seen.add(fn)
    if "ctx.explain" in inspect.getsource(fn):
        return True
    called = (fn.__globals__.get(name) for name in fn.__code__.co_names)
    return any(_reaches_explain(g, seen) for g in called
               if inspect.isfunction(g) and g.__module__.startswith("benchmark."))


def test_the_reexplaining_metrics_are_those_that_call_the_explainer():
    from benchmark.estimate import REEXPLAINING
    from benchmark.registry import registry
    calls = {name for name in registry("metric").names() if _reaches_explain(registry("metric").get(name).factory)}
    assert calls == set(REEXPLAINING)


def test_a_reference_built_from_a_run_prices_that_runs_evaluation_as_it_went(tmp_path):
    """Rates from a run's cost.csv and store (each metric's seconds on its clips, the rest per explained clip)
    give back the run's own evaluate seconds, cell by cell."""
    import pandas as pd

    import tests.engine_plugins  # noqa: F401  (registers the test plugins)
    from benchmark.estimate import build_reference
    from tests.engine_plugins import run_suite_text
    text = """
name = "r"
seeds = [0]
metrics = ["test-band-mass", "ff"]
[metric_clips]
ff = 2
[evaluate]
max_clips = 4
batch_size = 2
[datasets.test-blobs]
[detectors.test-template]
[explainers.error_map]
[explainers.random]
"""
    summary, folder, path = run_suite_text(tmp_path, text)
    assert summary.failed == []
    suite = load_suite(str(path))
    ref = build_reference(folder / "cost.csv", suite, tmp_path / "runs", cells_at_once=1)
    assert set(ref["metrics"]["test-template/error_map"]) == {"test-band-mass", "ff"}
    assert ref["metric_params"]["ff"] == {}
    unit = {"forward": 1.0, "backward_input": 10.0, "backward_train": 100.0}  # FLOPs per bin: count the passes
    est = estimate_suite(suite, {**ref, "flops": {"test-template": unit}})
    cost = pd.read_csv(folder / "cost.csv")
    ev = cost[cost.cell == "evaluate"].set_index("explainer")
    _, evals = expand(suite)
    # (cost.csv holds 6 significant digits; the reference reads the store's full ones)
    assert {c.explainer.name: est.seconds[c.key] for c in evals} == pytest.approx(ev.wall_s.to_dict(), rel=1e-4)
    # and the detector passes it ran: the explainer's, the scoring pass and each metric's, per clip of the cell
    from benchmark.estimate import dataset_counts
    bins = dataset_counts(suite.datasets[0])["bins"]
    passes = (ev.explainer_forward + ev.score_forward + ev.metric_forward
              + 10.0 * (ev.explainer_backward + ev.metric_backward)) * ev.n_clips * bins
    assert ev.metric_forward.min() > 0  # the metrics ran the detector: their passes are in the sum
    assert {c.explainer.name: est.flops[c.key] for c in evals} == pytest.approx(passes.to_dict(), rel=1e-4)
