"""How cells compute on their device: the numeric precision of detector and explainer forward passes, and the
one bound on how many inputs a forward pass may hold.

Precision (`--precision`, suite key `precision`): `fp32`, or `bf16` to autocast the forward passes of detector
training, explainers and interpreter training (bfloat16 needs no loss scaling). Detector calibration, test
scores and every metric stay in float32, so a table compares explainers on full-precision scores. Precision
changes results, so it is part of every cell key.

Forward bound (`--examples-per-forward`): how many inputs one forward pass without gradients may hold — 16 on
a CPU (the Skip-CAE's perturbation explainers ran 1.4–1.6× faster than at 32 on 2 AVX2 cores, nothing measured
slower), 512 on a GPU by default. An explainer whose inputs weigh more (gradients kept for a backward, a
dual-path network over a 10-s waveform) declares its `forward_weight` and takes that share of the bound. It
bounds memory only, so it is not part of any key (like the torch thread count, it may move the last digits of
a CPU result through the shapes of the matrix products). Two things it does not bound: detector training and
test scoring (the budget's `batch_size`), and Captum's infidelity (batch × `n_perturb_samples` inputs at once:
chunking it would change which noise each copy draws, and so the values).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from .errors import BenchmarkError

if TYPE_CHECKING:  # suites read PRECISIONS while loading, which must not import torch
    import torch

PRECISIONS = ("fp32", "bf16")
DEFAULT_EXAMPLES_PER_FORWARD = {"cpu": 16, "cuda": 512}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise BenchmarkError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of forward passes at `precision` on `device` (nothing to do for fp32)."""
    import torch
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """A region of float32 inside an autocast one: what must not change with the run's precision (a shared
    codec, a calibration, a reference the metrics compare against)."""
    import torch
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def examples_per_forward(device: torch.device, bound: int | None = None, weight: int = 1) -> int:
    """Inputs one forward pass may hold: the run's `bound` (default by device type) divided by the `weight` of
    one input relative to a detector pass without gradients, at least 1."""
    import torch
    total = bound or DEFAULT_EXAMPLES_PER_FORWARD.get(torch.device(device).type, DEFAULT_EXAMPLES_PER_FORWARD["cpu"])
    return max(1, total // max(1, weight))


def check_bound(bound: int | None) -> int | None:
    if bound is not None and bound < 1:
        raise BenchmarkError(f"--examples-per-forward {bound}: use a positive number of inputs per forward pass")
    return bound
