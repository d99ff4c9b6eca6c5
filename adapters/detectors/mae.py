"""`mae`: the planer paper's Skip-CAE-Transformer trained as a masked autoencoder (REFERENCE A)."""
from __future__ import annotations

import torch

from benchmark.errors import BenchmarkError
from benchmark.registry import detectors

from ._skip_cae import SkipCAEDetector, patch_mask


@detectors.register(
    "mae",
    summary="Skip-CAE-Transformer trained with 30 % of 4x4 patches zeroed, loss on masked bins; scored unmasked",
    version=1,
    capabilities={"reconstructs", "layers"},
)
class MaskedSkipCAE(SkipCAEDetector):
    """Every training access masks exactly `mask_ratio` of the non-overlapping `patch`x`patch` squares of
    each clip with zeros (the band's training mean, in the network's standardised input); the loss is
    Σ (x̂ - x)²·M / Σ M over the batch. Scoring sees the whole, unmasked input."""

    def __init__(self, mask_ratio: float = 0.3, patch: int = 4, lr: float = 1e-3, weight_decay: float = 0.01,
                 t_0: int = 5, eta_min: float = 1e-5):
        if not 0.0 < mask_ratio < 1.0:
            raise BenchmarkError(f"mae mask_ratio {mask_ratio} is outside (0, 1): give the masked fraction, e.g. 0.3")
        if patch < 1:
            raise BenchmarkError(f"mae patch {patch} must be a positive number of bins, e.g. 4")
        super().__init__(lr=lr, weight_decay=weight_decay, t_0=t_0, eta_min=eta_min)
        self.mask_ratio, self.patch = mask_ratio, patch

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        mask = patch_mask(len(x), x.shape[-2:], self.mask_ratio, self.patch, device=x.device)
        x_hat = self.unstandardise(self.net(self.standardise(x) * (1.0 - mask)))
        return ((x_hat - x) ** 2 * mask).sum() / mask.sum()
