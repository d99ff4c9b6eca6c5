"""The Skip-CAE-Transformer of the planer paper (REFERENCE A), shared by the `ae` and `mae` detectors.

The network maps a standardised log-mel `[B, 1, F, T]` to its reconstruction on the same grid. The
input is cropped so F and T divide by 8 (80x401 -> 80x400, 128x313 -> 128x312); the decoder resizes
back to the full grid before its last two convolutions, so every bin gets a reconstruction.
The detector wraps the network in fixed affine maps (per-mel-band training mean and standard
deviation), so training loss and score are the reference's MSE in input units while the network sees
inputs of unit scale; the reference feeds raw log power, which a handful of epochs cannot fit.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.detector import Budget, Detector, band_statistics, rng_devices, train_epochs
from benchmark.errors import BenchmarkError

# The reference has 10 heads on 500-wide tokens (80x400 grid); other grids take the divisor nearest 10.
REFERENCE_HEADS = 10


def attention_heads(width: int) -> int:
    """The divisor of the token `width` nearest the reference's 10 heads (ties: the larger)."""
    divisors = [h for h in range(1, width + 1) if width % h == 0]
    return min(divisors, key=lambda h: (abs(h - REFERENCE_HEADS), -h))


def pad_skip(x: torch.Tensor, width: int) -> torch.Tensor:
    """The reference's "pad-skip": `x: [B, C, H, W]` zero-padded on the channel axis to `width`."""
    return F.pad(x, (0, 0, 0, 0, 0, width - x.shape[1]))


def patch_mask(n_clips: int, grid: tuple[int, int], ratio: float, patch: int, *,
               device: torch.device | str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """MAE mask `[B, 1, F, T]` (1 = masked) of non-overlapping `patch`x`patch` squares aligned at bin 0.

    Exactly `round(ratio * n_patches)` patches per clip, drawn independently for every clip; patches
    cut by the grid's edge count as whole patches.
    """
    n_mels, n_frames = grid
    rows, cols = math.ceil(n_mels / patch), math.ceil(n_frames / patch)
    n_masked = round(ratio * rows * cols)
    keys = torch.rand(n_clips, rows * cols, device=device, generator=generator)
    chosen = keys.argsort(dim=1)[:, :n_masked]
    patches = torch.zeros(n_clips, rows * cols, device=keys.device).scatter_(1, chosen, 1.0)
    bins = patches.view(n_clips, 1, rows, cols).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return bins[..., :n_mels, :n_frames]


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x)


class _UpStage(nn.Module):
    """Mirror of an encoder stage: two convs, additive skip, BN, transposed conv (k2, s2).

    The skip keeps the block input's first `c_out` channels: the transpose of the encoder's pad-skip.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a, self.conv_b = _conv(c_in, c_out), _conv(c_out, c_out)
        self.norm = nn.BatchNorm2d(c_out)
        self.up = nn.ConvTranspose2d(c_out, c_out, kernel_size=2, stride=2)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        a = _act(self.conv_a(u))
        b = _act(self.conv_b(a))
        return self.up(self.norm(b + a + u[:, : a.shape[1]]))


class SkipCAETransformer(nn.Module):
    """Skip-CAE-Transformer for a `(F, T)` grid: `[B, 1, F, T] -> [B, 1, F, T]`.

    Encoder (3x3 convs, leaky ReLU, h-numbers as in REFERENCE A): stage outputs h5 `[B, 4, F/2, T/2]`,
    h8 `[B, 8, F/4, T/4]`, h11 `[B, 16, F/8, T/8]`; h12, h13 `[B, 32, F/8, T/8]` (h13 = Grad-CAM layer);
    a transformer encoder layer over the 32 channel tokens of width d = (F/8)(T/8) -> `last`; the
    bottleneck z = MaxPool(BN(last + lrelu(Linear_time(h12 + pad-skip(h11))))) `[B, 32, F/16, T/16]`
    (ceil-mode pooling so an odd T/8 loses no frame). The decoder mirrors it and cross-attends to `last`.
    """

    def __init__(self, grid: tuple[int, int]):
        super().__init__()
        n_mels, n_frames = grid
        if n_mels < 8 or n_frames < 8:
            raise BenchmarkError(f"grid {n_mels}x{n_frames} is too small for the Skip-CAE-Transformer, which pools "
                                 "three times: use clips of at least 8 mel bands and 8 frames")
        self.grid = (n_mels, n_frames)
        self.cropped = (n_mels // 8 * 8, n_frames // 8 * 8)
        self.tokens_grid = (self.cropped[0] // 8, self.cropped[1] // 8)
        width = self.tokens_grid[0] * self.tokens_grid[1]
        heads = attention_heads(width)
        # encoder
        self.conv1, self.conv2, self.conv3, self.conv4 = _conv(1, 2), _conv(2, 2), _conv(2, 4), _conv(4, 4)
        self.norm1, self.pool1 = nn.BatchNorm2d(4), nn.MaxPool2d(2)
        self.conv6, self.conv7 = _conv(4, 8), _conv(8, 8)
        self.norm2, self.pool2 = nn.BatchNorm2d(8), nn.MaxPool2d(2)
        self.conv9, self.conv10 = _conv(8, 16), _conv(16, 16)
        self.norm3, self.pool3 = nn.BatchNorm2d(16), nn.MaxPool2d(2)
        self.conv12, self.conv13 = _conv(16, 32), _conv(32, 32)
        self.encoder_transformer = nn.TransformerEncoderLayer(width, heads, batch_first=True)
        self.time_linear = nn.Linear(self.tokens_grid[1], self.tokens_grid[1])
        self.norm_z, self.pool_z = nn.BatchNorm2d(32), nn.MaxPool2d(2, ceil_mode=True)
        # decoder
        self.dconv1, self.dconv2, self.dconv3, self.dconv4 = _conv(32, 64), _conv(64, 64), _conv(64, 32), _conv(32, 32)
        self.norm_d, self.up0 = nn.BatchNorm2d(32), nn.ConvTranspose2d(32, 32, kernel_size=2, stride=2)
        self.decoder_transformer = nn.TransformerDecoderLayer(width, heads, batch_first=True)
        self.up1, self.up2, self.up3 = _UpStage(32, 16), _UpStage(16, 8), _UpStage(8, 4)
        self.out1, self.out2 = _conv(4, 2), _conv(2, 1)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder representations of a standardised `x: [B, 1, F, T]`, in forward order."""
        x = x[..., : self.cropped[0], : self.cropped[1]]
        h1 = _act(self.conv1(x))
        h2 = _act(self.conv2(h1))
        h3 = _act(self.conv3(h2 + h1))
        h4 = _act(self.conv4(h3))
        h5 = self.pool1(self.norm1(h4 + h3 + pad_skip(x, 4)))
        h6 = _act(self.conv6(h5))
        h7 = _act(self.conv7(h6))
        h8 = self.pool2(self.norm2(h7 + h6 + pad_skip(h5, 8)))
        h9 = _act(self.conv9(h8))
        h10 = _act(self.conv10(h9))
        h11 = self.pool3(self.norm3(h10 + h9 + pad_skip(h8, 16)))
        h12 = _act(self.conv12(h11))
        h13 = _act(self.conv13(h12))
        last = self.encoder_transformer(h13.flatten(2))  # [B, 32 tokens, d]
        side = _act(self.time_linear(h12 + pad_skip(h11, 32)))
        z = self.pool_z(self.norm_z(last.reshape(h13.shape) + side))
        return {"h5": h5, "h8": h8, "h11": h11, "h13": h13, "last": last, "z": z}

    def decode(self, z: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Bottleneck `z: [B, 32, F/16, T/16]` and encoder tokens `last: [B, 32, d]` -> `[B, 1, F, T]`."""
        d1 = _act(self.dconv1(z))
        d2 = _act(self.dconv2(d1))
        d3 = _act(self.dconv3(d2))
        d4 = _act(self.dconv4(d3))
        rows, cols = self.tokens_grid
        u = self.up0(self.norm_d(d4 + d3 + z))[..., :rows, :cols]
        u = self.decoder_transformer(u.flatten(2), last).reshape(len(u), 32, rows, cols)
        u = self.up3(self.up2(self.up1(u)))
        u = F.interpolate(u, size=self.grid, mode="bilinear", align_corners=False)
        return self.out2(_act(self.out1(u)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc = self.encode(x)
        return self.decode(enc["z"], enc["last"])

    def layers(self) -> dict[str, nn.Module]:
        """Every stage in forward order, named by the reference's h-numbers; 'gradcam' = h13's conv."""
        encoder = {"h1": self.conv1, "h2": self.conv2, "h3": self.conv3, "h4": self.conv4, "h5": self.pool1,
                   "h6": self.conv6, "h7": self.conv7, "h8": self.pool2, "h9": self.conv9, "h10": self.conv10,
                   "h11": self.pool3, "h12": self.conv12, "h13": self.conv13, "last": self.encoder_transformer,
                   "z": self.pool_z}
        decoder = {"d1": self.dconv1, "d2": self.dconv2, "d3": self.dconv3, "d4": self.dconv4, "up0": self.up0,
                   "decoder_transformer": self.decoder_transformer, "up1": self.up1, "up2": self.up2,
                   "up3": self.up3, "out1": self.out1, "out2": self.out2}
        return {**encoder, **decoder, "gradcam": self.conv13}


class SkipCAEDetector(Detector):
    """Reconstruction detector around `SkipCAETransformer`; score = mean over bins of (x̂ - x)².

    Subclasses define `training_loss(x) -> scalar` (plain AE, or masked AE).
    Training recipe of the reference: AdamW (lr 1e-3, weight decay 0.01), cosine annealing with warm
    restarts (T_0 5 epochs, eta_min 1e-5), early stopping on the validation loss, best weights restored.
    """

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.01, t_0: int = 5, eta_min: float = 1e-5):
        super().__init__()
        self.lr, self.weight_decay, self.t_0, self.eta_min = lr, weight_decay, t_0, eta_min
        self.net: SkipCAETransformer | None = None
        self.register_buffer("input_mean", torch.zeros(0))
        self.register_buffer("input_std", torch.ones(0))

    def build(self, grid: tuple[int, int], n_groups: int) -> None:
        super().build(grid, n_groups)
        device = self.tau.device
        self.grid = tuple(grid)
        self.net = SkipCAETransformer(self.grid).to(device)
        self.input_mean = torch.zeros(1, 1, grid[0], 1, device=device)
        self.input_std = torch.ones(1, 1, grid[0], 1, device=device)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Per-mel-band standardisation with the training statistics: `[B, 1, F, T]` -> same."""
        return (x - self.input_mean) / self.input_std

    def unstandardise(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.input_std + self.input_mean

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x̂ `[B, 1, F, T]` in the units of x."""
        return self.unstandardise(self.net(self.standardise(x)))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.reconstruct(x) - x) ** 2).mean(dim=(1, 2, 3))

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    def layers(self) -> dict[str, nn.Module]:
        return self.net.layers()

    def hidden_states(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder representations of `x: [B, 1, F, T]` for decoders: h5, h8, h11, h13 `[B, C, F', T']`,
        last `[B, 32, d]`, z `[B, 32, F/16, T/16]`."""
        return self.net.encode(self.standardise(x))

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, train: torch.Tensor, val: torch.Tensor, *, train_groups: torch.Tensor,
            val_groups: torch.Tensor, seed: int, budget: Budget,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        device = self.tau.device
        self.input_mean, self.input_std = band_statistics(train, device)
        # the seed fixes initial weights, dropout and masks without touching the caller's random state
        with torch.random.fork_rng(devices=rng_devices(device)):
            torch.manual_seed(seed)
            self.net = SkipCAETransformer(self.grid).to(device)
            optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=self.t_0,
                                                                             eta_min=self.eta_min)
            return train_epochs(self, self.training_loss, train, val, optimizer=optimizer, scheduler=scheduler,
                                budget=budget, seed=seed, progress=progress)
