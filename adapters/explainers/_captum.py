"""Shared building blocks of the Captum-based explainers: the attributed forward, baselines, chunking
over clips and samples, and seeding Captum's global random draws from the cell's generator.

Shapes: `x: [B, 1, F, T]` log-mel on the detector's device; attributions `[B, F, T]`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from benchmark.detector import Detector
from benchmark.errors import BenchmarkError

BASELINES = ("zeros", "reference")


def score_function(detector: Detector) -> Callable[[torch.Tensor], torch.Tensor]:
    """Captum's forward: `x: [n, 1, F, T] -> score: [n]`, so `target=None` attributes the score."""
    return detector.score


NOISE_SCALES = ("relative", "absolute")


def check_noise(explainer: str, noise: str) -> str:
    if noise not in NOISE_SCALES:
        raise BenchmarkError(f"{explainer}: unknown noise {noise!r}; use one of {', '.join(NOISE_SCALES)}")
    return noise


def noise_spread(x: torch.Tensor, noise: str) -> torch.Tensor:
    """The unit of a noise explainer's `stdevs` for each clip of `x: [B, 1, F, T]`: the clip's log-mel standard
    deviation (`relative`) or 1 (`absolute`, input units): `[B, 1, 1, 1]`."""
    if noise == "absolute":
        return torch.ones(len(x), 1, 1, 1, dtype=x.dtype, device=x.device)
    return x.detach().flatten(1).std(dim=1).clamp_min(1e-6).reshape(-1, 1, 1, 1)


def check_baseline(explainer: str, baseline: str) -> str:
    if baseline not in BASELINES:
        raise BenchmarkError(f"{explainer}: unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")
    return baseline


def baseline_of(detector: Detector, x: torch.Tensor, baseline: str) -> torch.Tensor:
    """`[B, 1, F, T]`: zeros, or the detector's normal counterpart of x (no gradient through it)."""
    if baseline == "zeros":
        return torch.zeros_like(x)
    with torch.no_grad():
        return detector.reference(x).detach().to(x.dtype)


def baseline_forward_passes(baseline: str) -> float:
    """The reference costs about one detector forward (a reconstruction or an embedding)."""
    return 1.0 if baseline == "reference" else 0.0


def clip_slices(n_clips: int, examples_per_forward: int) -> Iterator[slice]:
    """Consecutive groups of at most `examples_per_forward` clips."""
    step = max(1, examples_per_forward)
    for start in range(0, n_clips, step):
        yield slice(start, min(n_clips, start + step))


def samples_per_forward(n_clips: int, examples_per_forward: int) -> int:
    """How many perturbed copies of each of `n_clips` clips fit in one forward (at least one)."""
    return max(1, examples_per_forward // max(1, n_clips))


@contextmanager
def global_rng_from(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Seed the global torch (CPU and `device`) and numpy RNGs from `generator`, restore them after.

    Captum draws its noise (`torch.normal`) and GradientShap's interpolation points
    (`np.random.uniform`) from the global generators; seeding them from the cell's generator makes
    the maps reproducible without disturbing anyone else's random stream.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
