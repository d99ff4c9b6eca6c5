"""`lmac_td`: an L-MAC-TD interpreter trained on a frozen anomaly detector (DESIGN §6.1, REFERENCE D).

A SepFormer-style separator in the time domain: learned filterbank `enc` (Conv1d, kernel 16, stride
8, ReLU), a dual-path transformer mask net, and the transposed-conv synthesis `Dec`. The mask net reads
`(1 − α)·enc(w) + α·dec(h)`, with `dec(h)` the detector's hidden maps decoded onto the grid and
spread to the encoder frames; the explanation is `w_in = Dec(enc(w) ⊙ M)`, the masked-out part
`w_out = Dec(enc(w) ⊙ (1 − M))`. Loss and training: `_interpreter`.

Choices beyond the reference:
- The filterbank is initialised as a perfect-reconstruction pair (see `reconstruction_filterbank`),
  so at initialisation `Dec(enc(w)) = w` and `w_in + w_out = w` to float precision; `Dec` has no
  bias, so `w_in + w_out = Dec(enc(w))` holds exactly at all times. Training moves the filterbank
  (as in the reference), and an extra term `λ_rec·‖w_in + w_out − w‖² / ‖w‖²` (λ_rec 1; 0 gives the
  reference loss) keeps the two parts summing to the input, i.e. keeps the explanation a part of
  the clip rather than a resynthesis.
- Default size for CPU: N = 64 filters, one dual-path block of one intra and one inter transformer
  layer (4 heads, d_ffn 128; 88 k parameters in the mask net, about 0.23 M in all), chunk 200 (about
  sqrt(2L) for the L = 20 001 encoder frames of a 10-s 16 kHz clip, which balances intra- against
  inter-chunk attention: 0.6 against 1.1 CPU-s per clip forward at chunk 100). Training then costs
  about 3.5 CPU-s and 1 GB of activations per 10-s clip, so at most `examples_per_forward` clips
  (2 on a CPU, 32 on a GPU) go through one forward and gradients are accumulated up to the batch. The
  reference size (N 256, chunk 250, 2 blocks of 4 intra / 2 inter layers with 4 / 8 heads, d_ffn 256;
  1.1 M parameters per one-layer block) costs about 15 CPU-s per clip and step for a single
  one-layer block, out of reach of a CPU suite. Every size is a parameter.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.detector import Detector
from benchmark.errors import BenchmarkError
from benchmark.registry import explainers

from ._interpreter import HiddenDecoder, TrainedInterpreter

KERNEL = 16
STRIDE = KERNEL // 2


def reconstruction_filterbank(n_filters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Analysis and synthesis weights `[n_filters, 1, 16]` with `Dec(ReLU(enc(w))) = w` (hop 8).

    Pairs of filters ±(s ⊙ e_k): s the square-root periodic Hann window (its square overlap-adds to
    one at hop 8) and e_k the first 16 entries of row k of the orthonormal DCT-II matrix of size
    n_filters / 2, whose rows then form a Parseval frame of R^16. ReLU(a) − ReLU(−a) = a undoes the
    rectification, so the bank reconstructs exactly once both signal edges are padded by a hop.
    """
    if n_filters % 2 or n_filters < 2 * KERNEL:
        raise BenchmarkError(f"lmac_td: n_filters={n_filters}; the reconstructing filterbank needs an even "
                             f"number of at least {2 * KERNEL}")
    m = n_filters // 2
    k = torch.arange(m, dtype=torch.float64)[:, None]
    n = torch.arange(KERNEL, dtype=torch.float64)[None, :]
    dct = math.sqrt(2.0 / m) * torch.cos(math.pi * (n + 0.5) * k / m)
    dct[0] /= math.sqrt(2.0)
    frame = dct * torch.sin(math.pi * torch.arange(KERNEL, dtype=torch.float64) / KERNEL)
    signed = torch.stack([frame, -frame], dim=1).reshape(n_filters, 1, KERNEL).float()
    return signed, signed.clone()


def dual_path_masknet(n_filters: int, chunk_size: int, num_layers: int, intra_layers: int, inter_layers: int,
                      n_heads: int, d_ffn: int) -> nn.Module:
    """SpeechBrain's `Dual_Path_Model` of `SBTransformerBlock`s with a sigmoid output: `[B, N, L] -> [1, B, N, L]`."""
    # imported here: speechbrain takes seconds to import and only this explainer needs it
    from speechbrain.lobes.models.dual_path import Dual_Path_Model, SBTransformerBlock

    def block(layers: int) -> nn.Module:
        return SBTransformerBlock(num_layers=layers, d_model=n_filters, nhead=n_heads, d_ffn=d_ffn,
                                  dropout=0.0, use_positional_encoding=True, norm_before=True)

    net = Dual_Path_Model(in_channels=n_filters, out_channels=n_filters, intra_model=block(intra_layers),
                          inter_model=block(inter_layers), num_layers=num_layers, norm="ln", K=chunk_size,
                          num_spks=1, skip_around_intra=True, linear_layer_after_inter_intra=False)
    net.activation = nn.Sigmoid()  # the packaged model ends in ReLU; a mask lives in [0, 1]
    return net


class TimeDomainInterpreter(nn.Module):
    """`(w [B, N], hidden maps, grid (F, T)) -> (w_in [B, N], w_out [B, N], None)`."""

    def __init__(self, hidden_channels: list[int], n_mels: int, *, alpha: float, n_filters: int, hidden_width: int,
                 chunk_size: int, num_layers: int, intra_layers: int, inter_layers: int, n_heads: int, d_ffn: int):
        super().__init__()
        from speechbrain.lobes.models.dual_path import Decoder, Encoder

        self.alpha = alpha
        self.encoder = Encoder(kernel_size=KERNEL, out_channels=n_filters)
        self.decoder = Decoder(in_channels=n_filters, out_channels=1, kernel_size=KERNEL, stride=STRIDE, bias=False)
        analysis, synthesis = reconstruction_filterbank(n_filters)
        with torch.no_grad():
            self.encoder.conv1d.weight.copy_(analysis)
            self.decoder.weight.copy_(synthesis)
        self.hidden = HiddenDecoder(hidden_channels, hidden_width)
        self.to_frames = nn.Conv1d(hidden_width * n_mels, n_filters, kernel_size=1)
        self.masknet = dual_path_masknet(n_filters, chunk_size, num_layers, intra_layers, inter_layers, n_heads,
                                         d_ffn)

    def encode(self, w: torch.Tensor) -> torch.Tensor:
        """`[B, N] -> [B, n_filters, L]`; w padded by a hop at both ends (and to a whole hop) first."""
        tail = (-w.shape[-1]) % STRIDE
        return self.encoder(F.pad(w, (STRIDE, STRIDE + tail)))

    def decode(self, e: torch.Tensor, n_samples: int) -> torch.Tensor:
        """`[B, n_filters, L] -> [B, N]`, the padding of `encode` cut off."""
        return self.decoder(e).reshape(len(e), -1)[:, STRIDE:STRIDE + n_samples]

    def masks(self, e: torch.Tensor, maps: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """Mask `M: [B, n_filters, L]` in [0, 1] from the encoding and the hidden maps."""
        if self.alpha == 0.0:
            mix = e
        else:
            h = self.hidden(maps, grid).flatten(1, 2)                    # [B, width*F, T]
            h = F.interpolate(self.to_frames(h), size=e.shape[-1], mode="linear", align_corners=False)
            mix = h if self.alpha == 1.0 else (1.0 - self.alpha) * e + self.alpha * h
        return self.masknet(mix)[0]

    def forward(self, w: torch.Tensor, maps: list[torch.Tensor], grid: tuple[int, int]):
        e = self.encode(w)
        m = self.masks(e, maps, grid)
        parts = self.decode(torch.cat([e * m, e * (1.0 - m)]), w.shape[-1])
        w_in, w_out = parts.chunk(2)
        return w_in, w_out, None


@explainers.register(
    "lmac_td",
    summary="L-MAC-TD: dual-path transformer mask on a learned filterbank, from the detector's hidden maps",
    version=1,
    needs={"waveform", "training"},
    reference_sizes={"n_filters": 256, "chunk_size": 250, "num_layers": 2, "intra_layers": 4, "inter_layers": 2},
    test_params={"n_filters": 32, "chunk_size": 50, "d_ffn": 32, "hidden_width": 4},
)
class LMACTD(TrainedInterpreter):
    """L-MAC-TD on a detector; `explain` returns the attribution, `audio = w_in`, the grid mask
    (mel-power ratio) and `extra["audio_masked_out"] = w_out`."""

    # training a 10-s clip holds about 1 GB of activations at the default size: 2 clips per forward on a CPU
    forward_weight = 16

    def __init__(self, alpha: float = 0.75, n_filters: int = 64, chunk_size: int = 200, num_layers: int = 1,
                 intra_layers: int = 1, inter_layers: int = 1, n_heads: int = 4, d_ffn: int = 128,
                 hidden_width: int = 16, layers: tuple[str, ...] | list[str] | None = None,
                 lambda_in: float = 5.0, lambda_out: float = 0.2, lambda_reg: float = 6.0, lambda_rec: float = 1.0,
                 lr: float = 2e-4, weight_decay: float = 2e-6, augment: float = 0.5,
                 train_clips: int | None = 128, max_examples_per_forward: int | None = None) -> None:
        super().__init__(layers=layers, hidden_width=hidden_width, lambda_in=lambda_in, lambda_out=lambda_out,
                         lambda_reg=lambda_reg, lr=lr, weight_decay=weight_decay, augment=augment,
                         train_clips=train_clips, max_examples_per_forward=max_examples_per_forward)
        if not 0.0 <= alpha <= 1.0:
            raise BenchmarkError(f"lmac_td: alpha={alpha} weighs the decoded detector features against the "
                                 "waveform encoding; use a value in [0, 1]")
        if n_filters % n_heads:
            raise BenchmarkError(f"lmac_td: n_heads={n_heads} must divide n_filters={n_filters}")
        self.alpha, self.lambda_rec = alpha, lambda_rec
        self.sizes = dict(n_filters=n_filters, chunk_size=chunk_size, num_layers=num_layers,
                          intra_layers=intra_layers, inter_layers=inter_layers, n_heads=n_heads, d_ffn=d_ffn)
        reconstruction_filterbank(n_filters)  # fail at construction, not after a probe forward

    def build_network(self, hidden_channels: list[int]) -> nn.Module:
        return TimeDomainInterpreter(hidden_channels, self.spec.n_bins, alpha=self.alpha,
                                     hidden_width=self.hidden_width, **self.sizes)

    def loss_terms(self, detector: Detector, w: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor,
                   decision: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(detector, w, w_in, w_out, decision)
        error = (w_in + w_out - w).pow(2).mean(dim=1) / w.pow(2).mean(dim=1).clamp_min(1e-12)
        terms["rec"] = self.lambda_rec * error.mean()
        return terms
