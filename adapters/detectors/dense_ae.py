"""The DCASE task 2 baseline autoencoder: 5 stacked log-mel frames -> 640-d vectors, dense AE, MSE.

The network sees vectors standardised per mel band with training statistics and its output is mapped
back, so the loss and the score stay the baseline's MSE in input units; raw dB vectors (around -30 to
-80) would take far more steps than a suite's budget to fit through the output layer's bias.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmark.detector import Budget, Detector, band_statistics, train_epochs
from benchmark.registry import detectors


def _block(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU()]


@detectors.register(
    "dense_ae",
    summary="DCASE baseline AE: 5 stacked frames, 128x4-8-128x4 dense layers, score = mean MSE",
    version=2,
    capabilities={"reconstructs"},
)
class DenseAE(Detector):
    """x `[B, 1, F, T]` -> vectors `[B, T-frames+1, frames*F]` -> dense AE; error spread back to bins."""

    def __init__(self, frames: int = 5, hidden: int = 128, bottleneck: int = 8, lr: float = 1e-3):
        super().__init__()
        self.frames, self.hidden, self.bottleneck, self.lr = frames, hidden, bottleneck, lr
        self.net: nn.Module | None = None
        self.register_buffer("input_mean", torch.zeros(0))
        self.register_buffer("input_std", torch.ones(0))

    def build(self, grid: tuple[int, int], n_groups: int) -> None:
        super().build(grid, n_groups)
        n_mels, _ = grid
        d = self.frames * n_mels
        h, b = self.hidden, self.bottleneck
        layers = _block(d, h) + _block(h, h) + _block(h, h) + _block(h, h) + _block(h, b)
        layers += _block(b, h) + _block(h, h) + _block(h, h) + _block(h, h) + [nn.Linear(h, d)]
        self.net = nn.Sequential(*layers).to(self.tau.device)
        self.input_mean = torch.zeros(1, 1, n_mels, 1, device=self.tau.device)
        self.input_std = torch.ones(1, 1, n_mels, 1, device=self.tau.device)

    def _vectors(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, 1, F, T]` -> `[B, V, frames*F]`, V = T - frames + 1 (frame-major like the baseline)."""
        windows = x[:, 0].unfold(dimension=2, size=self.frames, step=1)  # [B, F, V, frames]
        return windows.permute(0, 2, 3, 1).flatten(2)

    def _fold(self, v: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Average overlapping frame windows back onto the grid: `[B, V, frames*F] -> [B, 1, F, T]`."""
        b, n_vec, _ = v.shape
        n_mels, n_frames = shape[-2], shape[-1]
        cols = v.reshape(b, n_vec, self.frames, n_mels).permute(0, 3, 2, 1).reshape(b, n_mels * self.frames, n_vec)
        total = torch.nn.functional.fold(cols, (n_mels, n_frames), kernel_size=(n_mels, self.frames))
        ones = torch.ones_like(cols)
        count = torch.nn.functional.fold(ones, (n_mels, n_frames), kernel_size=(n_mels, self.frames))
        return total / count

    def _reconstruct_vectors(self, v: torch.Tensor) -> torch.Tensor:
        """`[B, V, frames*F]` -> the network's reconstruction in input units, same shape."""
        mean = self.input_mean.reshape(-1).repeat(self.frames)
        std = self.input_std.reshape(-1).repeat(self.frames)
        out = self.net(((v - mean) / std).reshape(-1, v.shape[-1])).reshape(v.shape)
        return out * std + mean

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self._fold(self._reconstruct_vectors(self._vectors(x)), x.shape)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        v = self._vectors(x)
        return ((self._reconstruct_vectors(v) - v) ** 2).mean(dim=(1, 2))

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    def layers(self) -> dict[str, nn.Module]:
        linear = [m for m in self.net if isinstance(m, nn.Linear)]
        return {f"dense{i}": m for i, m in enumerate(linear)}

    def fit(self, train: torch.Tensor, val: torch.Tensor, *, train_groups: torch.Tensor,
            val_groups: torch.Tensor, seed: int, budget: Budget,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        device = self.tau.device
        self.input_mean, self.input_std = band_statistics(train, device)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        return train_epochs(self, lambda xb: self.score(xb).mean(), train, val, optimizer=optimizer,
                            scheduler=None, budget=budget, seed=seed, progress=progress)
