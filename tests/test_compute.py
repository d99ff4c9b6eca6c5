"""The run's precision and forward bound (`benchmark.compute`): arithmetic, and what cells run under."""
import pytest
import torch

import tests.engine_plugins as plugins
from benchmark.cells import expand
from benchmark.compute import autocast, examples_per_forward
from benchmark.errors import BenchmarkError
from benchmark.registry import registry
from benchmark.store import Store
from benchmark.suites import load_suite
from tests.engine_plugins import run_suite_text

SUITE = """
name = "prec"
seeds = [0]
metrics = ["test-band-mass", "test-dtype"]
{precision}
[evaluate]
max_clips = 4
batch_size = 2
[datasets.test-blobs]
n_train = 8
[detectors.test-template]
budget = {{ epochs = 1 }}
[explainers.test-probe]
"""


def test_the_bound_is_shared_by_weight_and_an_own_bound_wins():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (examples_per_forward(cpu), examples_per_forward(cuda)) == (16, 512)
    assert examples_per_forward(cpu, 100, weight=16) == 6
    assert examples_per_forward(cpu, 4, weight=16) == 1  # never zero
    saliency = registry("explainer").make("saliency")
    lmac_td = registry("explainer").make("lmac_td")
    assert (saliency.examples_per_forward(cpu), saliency.examples_per_forward(cuda)) == (8, 256)
    assert (lmac_td.examples_per_forward(cpu), lmac_td.examples_per_forward(cuda)) == (1, 32)
    saliency.forward_bound = 8
    assert saliency.examples_per_forward(cpu) == 4
    assert registry("explainer").make("saliency", max_examples_per_forward=3).examples_per_forward(cuda) == 3


def test_autocast_is_bf16_only_when_asked():
    cpu = torch.device("cpu")
    with autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(BenchmarkError, match="precision 'fp16'"):
        autocast(cpu, "fp16")


def test_precision_is_in_every_key_and_refused_when_unknown(tmp_path):
    keys = {}
    for precision in ("fp32", "bf16"):
        path = tmp_path / f"{precision}.toml"
        path.write_text(SUITE.format(precision=f'precision = "{precision}"'))
        trains, evals = expand(load_suite(str(path)))
        keys[precision] = (trains[0].key, evals[0].explain_key)
    assert keys["fp32"][0] != keys["bf16"][0] and keys["fp32"][1] != keys["bf16"][1]
    path = tmp_path / "bad.toml"
    path.write_text(SUITE.format(precision='precision = "fp8"'))
    with pytest.raises(BenchmarkError, match="precision must be one of fp32, bf16"):
        load_suite(str(path))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_and_explaining_run_at_the_precision_and_metrics_in_float32(tmp_path, precision):
    plugins.PROBED.clear()
    plugins.METRIC_DTYPES.clear()
    summary, folder, _ = run_suite_text(tmp_path, SUITE.format(precision=f'precision = "{precision}"'))
    assert summary.exit_code == 0
    want = "torch.bfloat16" if precision == "bf16" else None
    # two batches of two clips, each under the run's precision, with half the CPU's bound (the probe keeps gradients)
    assert plugins.PROBED == [(want, 8), (want, 8)]
    store = Store(tmp_path / "runs")
    train = store.status(store.suite_manifest("prec")["train"][0])
    assert train["log"]["autocast"] == want
    assert store.suite_manifest("prec")["precision"] == precision
    # the probe's map is made inside the autocast region (bf16 on a bf16 run); the metrics get it in float32
    assert plugins.METRIC_DTYPES == ["torch.float32", "torch.float32"]
    assert (folder / "leaderboard.csv").is_file()


def test_the_run_bound_reaches_explainers_and_metric_contexts(tmp_path, monkeypatch):
    import benchmark.evaluation as evaluation
    seen = []
    original = evaluation.MetricContext

    def recording(*args, **kwargs):
        seen.append(kwargs.get("forward_bound"))
        return original(*args, **kwargs)
    monkeypatch.setattr(evaluation, "MetricContext", recording)
    plugins.PROBED.clear()
    summary, _, _ = run_suite_text(tmp_path, SUITE.format(precision=""), forward_bound=8)
    assert summary.exit_code == 0
    assert plugins.PROBED == [(None, 4), (None, 4)]  # the probe's weight 2 takes half of the run's 8
    assert seen == [8, 8]
