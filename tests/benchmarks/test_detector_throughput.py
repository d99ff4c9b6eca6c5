"""Training and scoring throughput (clips/s) of every detector on the dcase grid (128 x 313).

Run with `pytest tests/benchmarks --benchmark-only --benchmark-enable`; each result carries
`extra_info["clips_per_s"]` (clips through one epoch of training, or through scoring). `AXB_BENCH_DEVICE=cuda`
runs them on the GPU (`tools/gpu_check.sh`), timed with the device synchronised; on a CPU rounds are timed by
process CPU time, so `clips_per_s` there is clips per CPU-second of all threads.
"""
from __future__ import annotations

import pytest
import torch

from benchmark.detector import Budget
from benchmark.registry import detectors
from tests.benchmarks._device import DEVICE, TIMER

DETECTORS = ["ae", "mae", "ast_knn", "dense_ae"]
GRID = (128, 313)
N_TRAIN, N_VAL, N_SCORE, BATCH = 64, 8, 32, 32


def _clips(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 1, GRID[0] // 8, GRID[1] // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=GRID, mode="bilinear", align_corners=False) * 5 - 40


def _built(name: str):
    det = detectors.make(name)
    det.build(GRID, 4)
    return det.to(DEVICE)


def _fit_one_epoch(det, train, val):
    det.fit(train, val, train_groups=torch.arange(len(train)) % 4, val_groups=torch.arange(len(val)) % 4,
            seed=0, budget=Budget(epochs=1, patience=1, batch_size=BATCH))
    return det


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.benchmark(timer=TIMER)
def test_training_throughput(benchmark, name):
    train, val = _clips(N_TRAIN, 0), _clips(N_VAL, 1)
    det = _built(name)
    benchmark.pedantic(_fit_one_epoch, args=(det, train, val), rounds=2, iterations=1)
    benchmark.extra_info["clips_per_s"] = N_TRAIN / benchmark.stats.stats.mean
    assert len(det.state_dict()) > 0


@pytest.fixture(scope="module")
def trained() -> dict:
    """Detectors trained for one epoch, built on first use and shared by the scoring benchmarks."""
    return {}


def _trained(cache: dict, name: str):
    if name not in cache:
        cache[name] = _fit_one_epoch(_built(name), _clips(N_TRAIN, 0), _clips(N_VAL, 1)).eval()
    return cache[name]


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.benchmark(timer=TIMER)
def test_scoring_throughput(benchmark, trained, name):
    det = _trained(trained, name)
    x = _clips(N_SCORE, 2).to(DEVICE)

    def score():
        with torch.no_grad():
            return det.score(x)

    scores = benchmark.pedantic(score, rounds=3, iterations=1)
    benchmark.extra_info["clips_per_s"] = N_SCORE / benchmark.stats.stats.mean
    assert scores.shape == (N_SCORE,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.benchmark(timer=TIMER)
def test_score_gradient_throughput(benchmark, trained, name):
    """Score plus backward to the input: the unit of work of every gradient explainer."""
    det = _trained(trained, name)
    x = _clips(N_SCORE, 2).to(DEVICE)

    def gradient():
        xg = x.clone().requires_grad_()
        det.score(xg).sum().backward()
        return xg.grad

    grad = benchmark.pedantic(gradient, rounds=3, iterations=1)
    benchmark.extra_info["clips_per_s"] = N_SCORE / benchmark.stats.stats.mean
    assert grad.shape == x.shape and torch.isfinite(grad).all()
