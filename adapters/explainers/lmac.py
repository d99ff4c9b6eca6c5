"""`lmac`: an L-MAC interpreter (spectral mask) trained on a frozen anomaly detector (DESIGN §6.1).

The magnitude-domain baseline that L-MAC-TD was made to beat on audio quality. A decoder of the
detector's hidden maps gives a mask `M: [B, F, T]` on the canonical mel grid (sigmoid), spread onto
the STFT bins of the grid's own STFT (same n_fft, hop, window: frame t of the STFT is frame t of the
grid) by the mel filterbank normalised per bin; the listenable explanation is the inverse STFT of the
masked spectrum with the input's phase, `w_in = iSTFT(S(M) ⊙ X)`, and `w_out = iSTFT(S(1 − M) ⊙ X)`.
The spread masks of M and 1 − M sum to one in every bin, so `w_in + w_out = w` exactly (iSTFT is
linear and the grid's window satisfies overlap-add). Both parts are scored through `LogMel` like
`lmac_td`, with the same loss (`_interpreter`), so the two differ only in where the mask acts.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.features import FeatureSpec, LogMel
from benchmark.registry import explainers

from ._interpreter import HiddenDecoder, TrainedInterpreter


def mel_to_stft_bins(spec: FeatureSpec) -> torch.Tensor:
    """`[n_fft // 2 + 1, F]`: each STFT bin's mel-band weights, normalised to sum to one.

    A bin no mel filter covers (DC, or outside f_min..f_max) takes the bands of its nearest covered bin.
    On an stft grid the rows are the STFT bins themselves: the identity.
    """
    if spec.kind == "stft":
        return torch.eye(spec.n_bins)
    fb = LogMel(spec).mel.mel_scale.fb.double()                     # [n_freq, F]
    total = fb.sum(dim=1)
    covered = torch.nonzero(total > 0).flatten()
    bins = torch.arange(len(fb))
    nearest = covered[(bins[:, None] - covered[None, :]).abs().argmin(dim=1)]
    return (fb[nearest] / total[nearest, None]).float()


class SpectralInterpreter(nn.Module):
    """`(w [B, N], hidden maps, grid (F, T)) -> (w_in [B, N], w_out [B, N], M [B, F, T])`."""

    def __init__(self, hidden_channels: list[int], spec: FeatureSpec, hidden_width: int):
        super().__init__()
        self.spec = spec
        self.hidden = HiddenDecoder(hidden_channels, hidden_width)
        self.head = nn.Conv2d(hidden_width, 1, kernel_size=3, padding=1)
        self.register_buffer("spread", mel_to_stft_bins(spec), persistent=False)
        self.register_buffer("window", torch.hann_window(spec.win_length), persistent=False)

    def stft(self, w: torch.Tensor) -> torch.Tensor:
        s = self.spec
        return torch.stft(w, s.n_fft, s.hop_length, s.win_length, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)

    def istft(self, spectrum: torch.Tensor, n_samples: int) -> torch.Tensor:
        s = self.spec
        return torch.istft(spectrum, s.n_fft, s.hop_length, s.win_length, window=self.window, center=True,
                           length=n_samples)

    def forward(self, w: torch.Tensor, maps: list[torch.Tensor], grid: tuple[int, int]):
        mask = torch.sigmoid(self.head(self.hidden(maps, grid)))[:, 0]        # [B, F, T]
        spectrum = self.stft(w)                                                 # [B, n_freq, T]
        bin_mask = torch.einsum("kf,bft->bkt", self.spread, mask)
        parts = self.istft(torch.cat([spectrum * bin_mask, spectrum * (1.0 - bin_mask)]), w.shape[-1])
        w_in, w_out = parts.chunk(2)
        return w_in, w_out, mask


@explainers.register(
    "lmac",
    summary="L-MAC: mel-grid mask from the detector's hidden maps, listenable by iSTFT with the input phase",
    version=1,
    needs={"waveform", "training"},
    test_params={"hidden_width": 4},
)
class LMAC(TrainedInterpreter):
    """L-MAC on a detector; `mask` is its own mel-grid mask, `attribution` the mel-power ratio of w_in
    to w (as for `lmac_td`), `audio = w_in`, `extra["audio_masked_out"] = w_out`."""

    def __init__(self, hidden_width: int = 16, layers: tuple[str, ...] | list[str] | None = None,
                 lambda_in: float = 5.0, lambda_out: float = 0.2, lambda_reg: float = 6.0, lr: float = 2e-4,
                 weight_decay: float = 2e-6, augment: float = 0.5,
                 train_clips: int | None = 128, max_examples_per_forward: int | None = None) -> None:
        super().__init__(layers=layers, hidden_width=hidden_width, lambda_in=lambda_in, lambda_out=lambda_out,
                         lambda_reg=lambda_reg, lr=lr, weight_decay=weight_decay, augment=augment,
                         train_clips=train_clips, max_examples_per_forward=max_examples_per_forward)

    def build_network(self, hidden_channels: list[int]) -> nn.Module:
        return SpectralInterpreter(hidden_channels, self.spec, self.hidden_width)
