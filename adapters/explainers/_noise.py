"""Random draws of the noise explainers (SmoothGrad, GradientSHAP) that do not depend on how the copies are split
into forward passes, nor on the device: each copy's draw is its own call on a host generator, in copy order, and
the values are then moved to the device. Captum's NoiseTunnel draws from the device's generator in shapes set by
the forward bound, so its maps changed with `--examples-per-forward` and between a CPU and a GPU run."""
from __future__ import annotations

import torch


def host_generator(generator: torch.Generator) -> torch.Generator:
    """A host generator seeded from `generator`: a second stream (interpolation points) beside the noise."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))


def host_noise(n: int, like: torch.Tensor, stdevs: float, generator: torch.Generator) -> torch.Tensor:
    """`[n, *like.shape[1:]]`: `n` copies of N(0, stdevs²) noise shaped like one clip of `like`, on its device and
    in its dtype."""
    shape = tuple(like.shape[1:])
    draws = [torch.randn(shape, generator=generator) for _ in range(n)]
    stacked = torch.stack(draws) if draws else torch.zeros((0, *shape))
    return (stdevs * stacked).to(device=like.device, dtype=like.dtype)


def host_points(n: int, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`[n]` points drawn uniformly from [0, 1), one call per copy, on `like`'s device and in its dtype."""
    draws = [torch.rand((), generator=generator) for _ in range(n)]
    stacked = torch.stack(draws) if draws else torch.zeros(0)
    return stacked.to(device=like.device, dtype=like.dtype)
