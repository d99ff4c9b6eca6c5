"""The normal training clips a detector does not learn from: a seeded share held out to validate its training and
calibrate its threshold. Interpreters that must read the same clips (the EnCodec codec's threshold calibration)
take them from here, so both sides hold out exactly the same rows."""
from __future__ import annotations

import torch

VALIDATION_FRACTION = 0.1


def held_out_split(n_clips: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices `(fit, held_out)` of `n_clips` normal training clips, each in row order: a seeded
    `VALIDATION_FRACTION` (at least one) held out. Below two clips the one clip serves both."""
    if n_clips < 2:
        return torch.arange(n_clips), torch.arange(n_clips)
    order = torch.randperm(n_clips, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(VALIDATION_FRACTION * n_clips)))
    return order[n_val:].sort().values, order[:n_val].sort().values
