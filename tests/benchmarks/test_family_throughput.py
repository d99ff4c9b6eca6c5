"""Throughput of every explainer family and of the metrics that re-run the explainer or the detector, timed by
process CPU time (a loaded machine's neighbours then cost less than in wall time), the detector frozen.

Everything runs on the conformance data (`benchmark.conformance`: 128 x 16 log-mels, 3 clips per call) with
the plugins' check settings (`test_params`: few samples, steps and epochs), on the `ae` detector
(Skip-CAE-Transformer) trained for one epoch. What to compare is the CPU time per detector pass
(`extra_info["cpu_ms_per_pass"]`: the fastest round's CPU time over the passes the explainer reports), which
does not depend on the sample counts; `extra_info["matmul_gflops"]` is the bound of this machine (a plain
1024² fp32 matmul, same timer), so a family's distance from it is visible. Run with

    pytest tests/benchmarks/test_family_throughput.py --benchmark-only --benchmark-enable

Trained interpreters (L-MAC, L-MAC-TD, the EnCodec codec) are fitted once before timing (not timed: their
training is priced per epoch by `run --estimate`); the timed call is their explanation.
"""
from __future__ import annotations

import time

import pytest
import torch

from benchmark import conformance
from benchmark.cells import inapplicable
from benchmark.metrics.context import MetricContext
from benchmark.registry import registry
from benchmark.suites import PluginConfig

DETECTOR = "ae"
ROUNDS = 3
DATA_CAPS = {"waveform", "tf_mask", "intervals", "audio"}
RERUNNING_METRICS = ("deletion_auc", "randomisation_spearman", "sensitivity_max", "infidelity", "ff")


def _explainers() -> list[str]:
    detector = PluginConfig("detector", DETECTOR)
    return [n for n in registry("explainer").names() if not n.startswith("test-")
            and inapplicable(PluginConfig("explainer", n), detector, DATA_CAPS) is None]


@pytest.fixture(scope="module")
def data() -> conformance.ConformanceData:
    return conformance.conformance_data()


@pytest.fixture(scope="module")
def detector(data):
    det = conformance.trained_detector(DETECTOR, data)
    return det.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def matmul_gflops() -> float:
    """FLOP/s of a 1024² fp32 matmul on this machine, by process CPU time (the fastest of 5)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        a @ b
        best = min(best, time.process_time() - t0)
    return 2 * 1024**3 / max(best, 1e-9) / 1e9


def record(benchmark, passes: float, clips: int, matmul_gflops: float) -> None:
    """The per-pass figures beside the timing (none per pass for an explainer that makes no detector pass)."""
    benchmark.extra_info.update(clips=clips, passes_per_clip=passes / clips, matmul_gflops=matmul_gflops,
                                cpu_ms_per_pass=1e3 * benchmark.stats.stats.min / passes if passes else None)


@pytest.mark.parametrize("name", _explainers())
@pytest.mark.benchmark(group="explainer families", timer=time.process_time)
def test_explainer_family(benchmark, name, data, detector, matmul_gflops):
    explainer = conformance.prepared_explainer(name, detector, data)
    batch = data.batch
    run = lambda: explainer.explain(detector, batch, generator=torch.Generator().manual_seed(0))  # noqa: E731
    expl = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, (expl.forward_passes + expl.backward_passes) * len(batch), len(batch), matmul_gflops)
    assert expl.attribution.shape == (len(batch), *batch.x.shape[-2:])


@pytest.mark.parametrize("metric", RERUNNING_METRICS)
@pytest.mark.benchmark(group="re-running metrics", timer=time.process_time)
def test_rerunning_metric(benchmark, metric, data, detector, matmul_gflops):
    explainer = conformance.prepared_explainer("saliency", detector, data)
    batch = data.batch
    expl = explainer.explain(detector, batch, generator=torch.Generator().manual_seed(0))
    plugin = registry("metric").get(metric)
    with torch.no_grad():
        scores = detector.score(batch.x)

    def run():
        ctx = MetricContext(batch=batch, explanation=expl, detector=detector, spec=data.spec, scores=scores,
                            explain=lambda d, b: explainer.explain(d, b, generator=torch.Generator().manual_seed(0)),
                            generator=torch.Generator().manual_seed(0))
        return plugin.factory(ctx, **conformance.check_params(plugin))

    result = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, (result.forward_passes + result.backward_passes) * len(batch), len(batch), matmul_gflops)
    assert all(v.shape == (len(batch),) for v in result.values.values())
