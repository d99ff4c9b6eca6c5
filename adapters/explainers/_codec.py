"""EnCodec's 24 kHz SEANet codec as a continuous latent space: building it, loading the official
checkpoint offline, training a small one on a dataset's normal clips, and resampling between the dataset
rate and 24 kHz (torchaudio, differentiable).

Shapes: waveforms `[B, N]` at the dataset rate, `[B, N24]` at 24 kHz; latent `z: [B, 128, L]` with
L = ceil(N24 / 320), 75 frames per second; log-mels `[B, 1, F, T]`.

Why the small codec reads its input amplified: at initialisation a SEANet encoder of a few channels passes
on little of a noise-like input (each strided convolution averages it away; the ELUs' rectified constant
stays), and at the synthetic datasets' levels (-22 to -26 dBFS) the latents of different clips differed by
0.3 % of their size. Training then collapsed it to one input-blind output, the average normal sound (every
clip's latent equal to 1e-4, log-mel L1 further from the clips than the mean normal log-mel is). Scaled to
an RMS of `INPUT_RMS`, the clips' latents differ by ~50 % at initialisation and the codec learns to use them.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torchaudio
from encodec.model import EncodecModel
from encodec.modules import SEANetDecoder, SEANetEncoder

from benchmark.dataset import fit_length
from benchmark.detector import Budget, EarlyStopping
from benchmark.errors import BenchmarkError
from benchmark.features import LogMel
from benchmark.metrics.synthesis import logmel_l1, si_sdr

CODEC_RATE = 24_000
LATENT_DIM = 128
RATIOS = [8, 5, 4, 2]  # the 24 kHz model's strides: hop 320 samples, 75 latent frames per second
OFFICIAL_CHECKPOINT = "encodec_24khz-d7cc33bc.th"
CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/" + OFFICIAL_CHECKPOINT
SEGMENT_S = 1.0  # EnCodec trains on 1-s crops
LEARNING_RATE = 3e-3
ADAM_BETAS = (0.5, 0.9)  # EnCodec's
INPUT_RMS = 30.0  # the median RMS of its training normals as the small codec's encoder reads them
STFT_SIZES = (64, 128, 256, 512, 1024, 2048)  # EnCodec's multi-scale spectral loss spans 2^5..2^11 at 24 kHz
# held-out normals decoded once per codec: their log-mels calibrate every detector's codec-domain threshold
CALIBRATION_CLIPS = 64
LOG_FLOOR_DB = 60.0
# EnCodec's lambda_t: the waveform term is weak on purpose, as the L1-optimal estimate of a noise-like
# (unpredictable) component is silence; weighted like the spectral terms, it made the codec 6-10 dB too quiet
WAVEFORM_WEIGHT = 0.1
NOISE_SEED = 20_241_010  # the fixed noise clip whose latent replaces what an explanation leaves out


class LatentCodec(torch.nn.Module):
    """EnCodec's encoder and decoder without the quantizer: 24 kHz waveforms <-> continuous latent. The encoder
    reads the waveform times `input_gain` (1 for the official model; see the module note for the small one);
    the decoder writes at the waveform's own level."""

    def __init__(self, encoder: SEANetEncoder, decoder: SEANetDecoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.register_buffer("input_gain", torch.tensor(1.0))

    def encode(self, w24: torch.Tensor) -> torch.Tensor:
        """`[B, N24] -> [B, 128, ceil(N24 / 320)]`."""
        return self.encoder((w24 * self.input_gain).unsqueeze(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """`[B, 128, L] -> [B, 320 L]` at 24 kHz."""
        return self.decoder(z).squeeze(1)


def small_codec(n_filters: int, lstm: int) -> LatentCodec:
    """The 24 kHz EnCodec architecture (causal SEANet, weight norm, strides 8-5-4-2, 128-d latent) with
    `n_filters` base channels instead of 32 and `lstm` LSTM layers instead of 2."""
    arch = dict(channels=1, dimension=LATENT_DIM, n_filters=n_filters, ratios=RATIOS, lstm=lstm, causal=True,
                norm="weight_norm")
    with warnings.catch_warnings():  # encodec 0.1.1 uses torch's deprecated (but working) weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        return LatentCodec(SEANetEncoder(**arch), SEANetDecoder(**arch))


def checkpoint_file(source: str) -> Path:
    """The state-dict file `source` names: a folder holding the official checkpoint, the file itself, or
    "hub" (torch hub's cache, where `encodec_model_24khz(pretrained=True)` saves it)."""
    path = Path(torch.hub.get_dir()) / "checkpoints" if source == "hub" else Path(source).expanduser()
    if path.is_dir():
        path = path / OFFICIAL_CHECKPOINT
    if not path.is_file():
        raise BenchmarkError(f"encodec_latent: no EnCodec checkpoint at '{path}': download {CHECKPOINT_URL} into "
                             "that folder (or pass pretrained=PATH of a 24 kHz EnCodec state-dict file)")
    if path.name == OFFICIAL_CHECKPOINT:
        expected = OFFICIAL_CHECKPOINT.split("-")[1].split(".")[0]
        if not hashlib.sha256(path.read_bytes()).hexdigest().startswith(expected):
            raise BenchmarkError(f"encodec_latent: '{path}' does not match the official checksum {expected}: "
                                 f"download it again from {CHECKPOINT_URL}")
    return path


def pretrained_codec(source: str) -> LatentCodec:
    """The 24 kHz EnCodec (`encodec_model_24khz` architecture) with weights from `source`, offline."""
    path = checkpoint_file(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, ValueError) as exc:
        raise BenchmarkError(f"encodec_latent: '{path}' is not a 24 kHz EnCodec state dict "
                             f"({str(exc).splitlines()[0]})") from None
    return LatentCodec(model.encoder, model.decoder)


def to_codec_rate(w: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """`[B, N]` at the dataset rate -> `[B, N24]` at 24 kHz."""
    return torchaudio.functional.resample(w, sample_rate, CODEC_RATE)


class LatentSynthesis:
    """The codec seen from the dataset: waveforms at `sample_rate` (clips of `n_samples`) <-> latents.

    This is the `synthesis` object the explainer hands to the synthesis metrics; `examples_per_forward`
    bounds how many latents one decode holds.
    """

    def __init__(self, codec: LatentCodec, sample_rate: int, n_samples: int, examples_per_forward: int) -> None:
        self.codec, self.sample_rate, self.n_samples = codec, sample_rate, n_samples
        self.examples_per_forward = examples_per_forward

    def encode(self, w: torch.Tensor) -> torch.Tensor:
        """`[B, N] -> [B, 128, L]`."""
        return self.codec.encode(to_codec_rate(w, self.sample_rate))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """`[n, 128, L] -> [n, N]` at the dataset rate, cropped to the clip length (differentiable)."""
        w = torchaudio.functional.resample(self.codec.decode(z), CODEC_RATE, self.sample_rate)
        return fit_length(w, self.n_samples)

    def reconstruct(self, w: torch.Tensor) -> torch.Tensor:
        """Dec(Enc(w)) without gradients, in chunks: `[B, N] -> [B, N]`."""
        step = max(1, self.examples_per_forward)
        with torch.no_grad():
            return torch.cat([self.decode(self.encode(w[i:i + step])) for i in range(0, len(w), step)])

    def noise_latent(self, rms: float, device: torch.device) -> torch.Tensor:
        """The latent of the fixed noise clip (white, `rms`, the clip's length and rate): `[1, 128, L]`."""
        noise = torch.randn(1, self.n_samples, generator=torch.Generator().manual_seed(NOISE_SEED)) * rms
        with torch.no_grad():
            return self.encode(noise.to(device))


def rms(w: torch.Tensor) -> torch.Tensor:
    """Root mean square per clip: `[B, N] -> [B]`."""
    return w.double().pow(2).mean(-1).sqrt()


def multi_resolution_stft_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over the `STFT_SIZES` (hop 1/4): `[B, N] -> scalar`.

    The log floor sits `LOG_FLOOR_DB` below each target's peak bin: with an absolute floor far below the
    signal, matching the near-silent bins dominates the loss and drives the output towards silence."""
    total = estimate.new_zeros(())
    for n_fft in STFT_SIZES:
        window = torch.hann_window(n_fft, device=estimate.device, dtype=estimate.dtype)
        s_hat, s = (torch.stft(w, n_fft, n_fft // 4, window=window, return_complex=True).abs()
                    for w in (estimate, target))
        floor = s.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8) * 10 ** (-LOG_FLOOR_DB / 20)
        convergence = torch.linalg.vector_norm(s - s_hat) / torch.linalg.vector_norm(s).clamp_min(1e-8)
        log_magnitude = (torch.log(s_hat + floor) - torch.log(s + floor)).abs().mean()
        total = total + convergence + log_magnitude
    return total / len(STFT_SIZES)


def codec_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`WAVEFORM_WEIGHT` x waveform L1 relative to the target's mean magnitude (scale-free, like the spectral
    terms) + the multi-resolution STFT loss: EnCodec's reconstruction terms, without its adversary."""
    waveform_l1 = (estimate - target).abs().mean() / target.abs().mean().clamp_min(1e-8)
    return WAVEFORM_WEIGHT * waveform_l1 + multi_resolution_stft_loss(estimate, target)


def blind_logmel_l1(x: torch.Tensor, band_mean: torch.Tensor) -> torch.Tensor:
    """Log-mel L1 of the best reconstruction that ignores its input, the normals' mean log-mel per band
    `[1, 1, F, 1]`, against log-mels `x: [M, 1, F, T]`: `-> [M]`. A codec collapsed to one output scores
    about this."""
    return logmel_l1(band_mean.expand_as(x), x)


def train_codec(codec: LatentCodec, fit: torch.Tensor, val: torch.Tensor, logmel: LogMel, *, seed: int,
                budget: Budget, band_mean: torch.Tensor, floor_ratio: float) -> dict[str, Any]:
    """Train on random 1-s crops of normal clips `fit: [N, S]` (CPU, dataset rate) with Adam and a cosine
    decay over the budget's steps; early-stop on the centre crops of `val: [M, S]`; best weights restored.
    An epoch draws one crop per training clip.

    Short of the reconstruction floor (the validation crops' mean log-mel L1 at most `floor_ratio` times
    their `blind_logmel_l1` against the training normals' `band_mean: [1, 1, F, 1]`) a plateau does not end
    training: only the budget's epoch or time cap does, so a codec that has not yet learnt to use its
    latent keeps its budget."""
    device = next(codec.parameters()).device
    sample_rate = logmel.spec.sample_rate
    seg = min(int(round(SEGMENT_S * sample_rate)), fit.shape[1])
    g = torch.Generator().manual_seed(seed)
    start = (val.shape[1] - seg) // 2
    val_crops = val[:, start:start + seg]
    with torch.no_grad():
        blind = float(blind_logmel_l1(logmel(val_crops.to(device)), band_mean.to(device)).mean())
    optimizer = torch.optim.Adam(codec.parameters(), lr=LEARNING_RATE, betas=ADAM_BETAS)
    # the budget fixes the number of steps, so the rate can anneal to zero over exactly that many
    total_steps = budget.epochs * math.ceil(len(fit) / budget.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)

    def reconstruct(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w24 = to_codec_rate(crops.to(device), sample_rate)
        return codec.decode(codec.encode(w24))[..., : w24.shape[-1]], w24

    def validate() -> tuple[float, float]:
        """Mean loss and mean log-mel L1 of the validation crops."""
        codec.eval()
        loss = l1 = 0.0
        with torch.no_grad():
            for i in range(0, len(val_crops), budget.batch_size):
                crops = val_crops[i:i + budget.batch_size].to(device)
                decoded, w24 = reconstruct(crops)
                loss += float(codec_loss(decoded, w24)) * len(crops)
                back = fit_length(torchaudio.functional.resample(decoded, CODEC_RATE, sample_rate), seg)
                l1 += float(logmel_l1(logmel(back), logmel(crops)).sum())
        return loss / len(val_crops), l1 / len(val_crops)

    stopping = EarlyStopping(codec, budget)  # its clock includes the first validation
    initial, initial_l1 = validate()
    stopping.best = initial
    steps, epochs, curve, l1_curve = 0, 0, [], []
    while epochs < budget.epochs:
        epochs += 1
        codec.train()
        offsets = torch.randint(0, fit.shape[1] - seg + 1, (len(fit),), generator=g)
        order = torch.randperm(len(fit), generator=g)
        for i in range(0, len(fit), budget.batch_size):
            rows = order[i:i + budget.batch_size]
            crops = torch.gather(fit[rows], 1, offsets[rows, None] + torch.arange(seg))
            optimizer.zero_grad(set_to_none=True)
            codec_loss(*reconstruct(crops)).backward()
            optimizer.step()
            schedule.step()
            steps += 1
        loss, l1 = validate()
        curve.append(loss)
        l1_curve.append(l1)
        stopping.budget = budget if l1 <= floor_ratio * blind else replace(budget, patience=0)  # 0: no plateau stop
        if stopping.should_stop(loss):
            break
    stopping.restore_best()
    return {"epochs": epochs, "steps": steps, "train_seconds": stopping.seconds, "val_loss_initial": initial,
            "val_loss_best": stopping.best, "capped_by_time": stopping.capped, "stop_reason": stopping.reason,
            "val_curve": curve, "crop_blind_logmel_l1": blind, "crop_logmel_l1_initial": initial_l1,
            "crop_logmel_l1_curve": l1_curve, "train_clips": len(fit), "val_clips": len(val),
            "clip_epochs": epochs * len(fit)}


def codec_quality(recon: torch.Tensor, clips: torch.Tensor, logmel: LogMel, band_mean: torch.Tensor,
                  floor_ratio: float) -> dict[str, Any]:
    """Mean SI-SDR (dB) and log-mel L1 (grid units) of reconstructions `recon: [M, N]` against `clips: [M, N]`,
    beside the input-blind level of those clips (`blind_logmel_l1`, against the normals' `band_mean`
    `[1, 1, F, 1]`), the floor (`floor_ratio` times it) and whether the log-mel L1 is within it (`floor_met`)."""
    with torch.no_grad():
        x = logmel(clips)
        l1 = float(logmel_l1(logmel(recon), x).mean())
        blind = float(blind_logmel_l1(x, band_mean).mean())
    return {"si_sdr_db": float(si_sdr(recon, clips).mean()), "logmel_l1": l1, "blind_logmel_l1": blind,
            "floor_logmel_l1": floor_ratio * blind, "floor_met": l1 <= floor_ratio * blind, "clips": len(clips)}
