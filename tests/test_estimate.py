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
