"""`ae`: the planer paper's Skip-CAE-Transformer trained as a plain autoencoder (REFERENCE A)."""
from __future__ import annotations

import torch

from benchmark.registry import detectors

from ._skip_cae import SkipCAEDetector


@detectors.register(
    "ae",
    summary="Skip-CAE-Transformer autoencoder (planer paper), score = mean squared reconstruction error",
    version=1,
    capabilities={"reconstructs", "layers"},
)
class SkipCAE(SkipCAEDetector):
    """Trained on the mean squared error over all bins, the same quantity it scores with."""

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.reconstruct(x) - x) ** 2).mean()
