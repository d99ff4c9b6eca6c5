"""Shared parts of the trained interpreters `lmac_td` and `lmac` (DESIGN §6.1, REFERENCE D).

An interpreter splits a clip's waveform `w: [B, N]` into a masked-in part `w_in` (the listenable
explanation) and a masked-out part `w_out`, from a mask decoded out of the detector's own hidden
representations. Both parts are scored by the frozen detector through the differentiable `LogMel`,
and the interpreter alone is trained with the L-MAC loss adapted to one-class detectors:

    λ_in·BCE(p(w_in), ŷ) − λ_out·BCE(p(w_out), ŷ) + λ_reg·mean log1p|STFT(w_in)|

with p the detector's calibrated anomaly probability (`p_anom`) and ŷ its own decision on w (the
explained "class" is the prediction, not a label), both BCEs computed from the logit of p (see
`loss_terms`). Reference weights: λ_in 5, λ_out 0.2, λ_reg 6; Adam lr 2e-4, weight decay 2e-6.

Training data. The engine passes normal training clips only, on which a calibrated detector decides
"normal" about 90 % of the time; an interpreter trained on them alone would never see the decision
it is asked to explain at test time. So each training clip is, with probability `augment`, replaced
by a copy with a synthetic anomaly added: a tone or a band-limited noise burst, 0.2–2 s long, at a
random frequency and at −15..+5 dB relative to the clip. The target ŷ stays the detector's decision
on the clip actually fed (a perturbation the detector does not notice is trained as "normal"), so
both decisions occur and nothing is taught that the detector does not itself say. The families are
deliberately generic, but they resemble two synthetic-dataset families (tonal whine, friction
burst): results on those families may favour these explainers slightly.

Hidden representations. The modules named by `detector.layers()` are hooked during the detector's
forward on `LogMel(w)` (by default the encoder: every module listed up to the one aliased 'gradcam',
or all of them when there is no such alias); a detector without layers falls back to the log-mel
itself. Each hooked output is read as a map `[B, C, h, w]` with time on the last axis:
4-D conv maps as they are, 3-D `[B, C, L]` as one row, 2-D `[B, D]` as one pixel and 2-D `[B·k, D]`
(frame-wise dense layers) as `[B, D, 1, k]`. `HiddenDecoder` projects each to a common width and
resizes it bilinearly onto the canonical grid `[F, T]`, so it fits any detector and any preset.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.dataset import ClipTable
from benchmark.detector import Budget, Detector, EarlyStopping, rng_devices
from benchmark.errors import BenchmarkError
from benchmark.explainer import Explainer
from benchmark.features import FeatureSpec, LogMel
from benchmark.types import Batch, Explanation

GRADCAM_ALIAS = "gradcam"
LOG_MEL = "log-mel"  # the fallback "layer": the detector's input itself
BCE_CAP = 100.0
MIN_SPLIT = 10  # fewer training clips than this: no held-out validation (the training clips serve)
# the hidden maps' normalisation is measured on this many training clips, whatever the forward bound (which
# sets only how many of them one forward pass holds): the trained network does not depend on the device
STATISTICS_CLIPS = 16


def split_interpreter_clips(waves: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation) clips: a seeded tenth (at least 2) held out once there are `MIN_SPLIT`
    clips; below that both are all the clips."""
    if len(waves) < MIN_SPLIT:
        return waves, waves
    order = torch.randperm(len(waves), generator=generator)
    n_val = max(2, len(waves) // 10)
    return waves[order[n_val:]], waves[order[:n_val]]


# --- hidden representations of the detector ---------------------------------------------------

def hidden_layer_names(detector: Detector, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """The layers to decode: `requested`, else the encoder part of `layers()`, else the log-mel."""
    layers = detector.layers()
    if requested:
        unknown = [n for n in requested if n != LOG_MEL and n not in layers]
        if unknown:
            raise BenchmarkError(f"interpreter: detector {type(detector).__name__} has no layer "
                                 f"{', '.join(map(repr, unknown))} (layers(): {', '.join(layers) or 'none'}; "
                                 f"or {LOG_MEL!r} for the input)")
        return tuple(requested)
    if not layers:
        return (LOG_MEL,)
    names = [n for n in layers if n != GRADCAM_ALIAS]
    if GRADCAM_ALIAS in layers:
        target = layers[GRADCAM_ALIAS]
        ends = [i for i, n in enumerate(names) if layers[n] is target]
        if ends:
            names = names[: ends[0] + 1]
        else:
            names.append(GRADCAM_ALIAS)
    return tuple(names)


def as_feature_map(h: torch.Tensor, batch_size: int, name: str) -> torch.Tensor:
    """A hooked output as a map `[B, C, h, w]`, time last (see the module docstring for the rules)."""
    if h.dim() == 4 and h.shape[0] == batch_size:
        return h
    if h.dim() == 3 and h.shape[0] == batch_size:
        return h.unsqueeze(2)
    if h.dim() == 2 and h.shape[0] % batch_size == 0:
        frames = h.shape[0] // batch_size
        return h.reshape(batch_size, frames, h.shape[1]).transpose(1, 2).unsqueeze(2)
    raise BenchmarkError(f"interpreter: layer {name!r} outputs shape {tuple(h.shape)} for {batch_size} clips; "
                         "supported: [B, C, h, w], [B, C, L], [B, D] or [B*k, D]; choose other layers with "
                         "the explainer's `layers` parameter")


def detector_forward(detector: Detector, x: torch.Tensor, names: tuple[str, ...]
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Score `[B]` of `x: [B, 1, F, T]` and the named hidden maps `[B, C, h, w]` from the same forward."""
    modules = detector.layers()
    captured: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            captured.setdefault(name, out)  # a module called twice keeps its first output
        return hook

    handles = [modules[n].register_forward_hook(keeper(n)) for n in names if n != LOG_MEL]
    try:
        score = detector.score(x)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n != LOG_MEL and n not in captured]
    if missing:
        raise BenchmarkError(f"interpreter: layer(s) {', '.join(map(repr, missing))} of {type(detector).__name__} "
                             "did not run during score(x); choose layers on the scoring path")
    maps = [x if n == LOG_MEL else as_feature_map(captured[n], len(x), n) for n in names]
    return score, maps


class HiddenDecoder(nn.Module):
    """Hidden maps -> features on the canonical grid: `[[B, C_l, h_l, w_l]] -> [B, width, F, T]`.

    Each layer is standardised with fixed statistics of the training clips (scalar per layer, so the
    overall level, which carries the anomaly, survives), projected 1x1 to `width` channels, resized
    bilinearly to `[F, T]` (1x1 first: the two commute and the projection is cheaper at low
    resolution), summed, and refined by one 3x3 convolution.
    """

    def __init__(self, channels: list[int], width: int):
        super().__init__()
        self.project = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in channels)
        self.refine = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.register_buffer("layer_mean", torch.zeros(len(channels)))
        self.register_buffer("layer_std", torch.ones(len(channels)))

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Each hidden layer's mean and standard deviation over all its elements (`[L]` each)."""
        self.layer_mean = mean.float().to(self.layer_mean.device)
        self.layer_std = std.float().clamp_min(1e-6).to(self.layer_std.device)

    def forward(self, maps: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        total = 0.0
        for i, (m, proj) in enumerate(zip(maps, self.project, strict=True)):
            z = proj((m.float() - self.layer_mean[i]) / self.layer_std[i])
            total = total + F.interpolate(z, size=grid, mode="bilinear", align_corners=False)
        return F.relu(self.refine(F.relu(total)))


def anomaly_logit(detector: Detector, x: torch.Tensor) -> torch.Tensor:
    """The logit of the calibrated anomaly probability, (score − tau) / temperature: `[B, 1, F, T] -> [B]`
    (`Detector.p_from_score` is its sigmoid)."""
    return (detector.score(x) - detector.tau) / detector.temperature


# --- synthetic training anomalies ------------------------------------------------------------

def synthetic_anomalies(w: torch.Tensor, sample_rate: int, generator: torch.Generator) -> torch.Tensor:
    """`w: [B, N]` plus one random tone or band-limited noise burst per clip: `[B, N]`.

    Burst: onset uniform, 0.2–2 s long (at most the clip), 10 ms raised ramps, level −15..+5 dB
    relative to the clip's RMS; tone at 100 Hz–0.45·sr (log-uniform), noise band one third to one
    octave wide around a log-uniform centre. Random draws come from the CPU `generator`.
    """
    b, n = w.shape
    u = torch.rand(b, 7, generator=generator, dtype=torch.float64)
    clip_s = n / sample_rate
    dur_s = torch.minimum(0.2 * (10.0 ** u[:, 0]), torch.tensor(clip_s))   # 0.2..2 s, log-uniform
    onset_s = u[:, 1] * (clip_s - dur_s)
    f_lo, f_hi = 100.0, 0.45 * sample_rate
    centre_hz = f_lo * (f_hi / f_lo) ** u[:, 2]
    half_band = 2.0 ** ((1.0 / 3.0 + u[:, 3] * 2.0 / 3.0) / 2.0)           # 1/3..1 octave wide
    level_db = -15.0 + 20.0 * u[:, 4]
    is_tone = u[:, 5] < 0.5
    phase = 2 * math.pi * u[:, 6]

    t_s = torch.arange(n, dtype=torch.float64) / sample_rate
    ramp_s = 0.01
    env = torch.minimum((t_s - onset_s[:, None]) / ramp_s, (onset_s + dur_s)[:, None] / ramp_s - t_s / ramp_s)
    env = 0.5 - 0.5 * torch.cos(math.pi * env.clamp(0.0, 1.0))
    tone = math.sqrt(2.0) * torch.sin(2 * math.pi * centre_hz[:, None] * t_s + phase[:, None])
    spectrum = torch.fft.rfft(torch.randn(b, n, generator=generator, dtype=torch.float64), dim=1)
    freqs = torch.fft.rfftfreq(n, 1.0 / sample_rate, dtype=torch.float64)
    band = (freqs >= (centre_hz / half_band)[:, None]) & (freqs <= (centre_hz * half_band)[:, None])
    noise = torch.fft.irfft(spectrum * band, n=n, dim=1)
    noise = noise / noise.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
    burst = torch.where(is_tone[:, None], tone, noise) * env              # unit RMS while on

    rms = w.double().pow(2).mean(dim=1, keepdim=True).sqrt().cpu()
    gain = rms * 10.0 ** (level_db[:, None] / 20.0)
    return w + (gain * burst).to(w.dtype).to(w.device)


# --- the interpreter explainer ---------------------------------------------------------------

class TrainedInterpreter(Explainer):
    """Base of `lmac_td` and `lmac`: hidden-map capture, the loss, budgeted training, the attribution.

    Subclasses build `self.network` in `build_network(hidden_channels)`; it maps
    `(w [B, N], maps, grid (F, T)) -> (w_in [B, N], w_out [B, N], grid_mask [B, F, T] | None)`.
    """

    trains = True

    def __init__(self, *, layers: tuple[str, ...] | list[str] | None, hidden_width: int, lambda_in: float,
                 lambda_out: float, lambda_reg: float, lr: float, weight_decay: float, augment: float,
                 train_clips: int | None, max_examples_per_forward: int | None) -> None:
        super().__init__(max_examples_per_forward)
        if not 0.0 <= augment <= 1.0:
            raise BenchmarkError(f"interpreter: augment={augment} is the share of training clips given a synthetic "
                                 "anomaly; use a value in [0, 1]")
        self.layers = tuple(layers) if layers else None
        self.hidden_width = hidden_width
        self.lambda_in, self.lambda_out, self.lambda_reg = lambda_in, lambda_out, lambda_reg
        if train_clips is not None and train_clips < 1:
            raise BenchmarkError(f"interpreter: train_clips={train_clips}; use a positive count, or None for all "
                                 "normal training clips")
        self.lr, self.weight_decay, self.augment, self.train_clips = lr, weight_decay, augment, train_clips
        self.network: nn.Module | None = None
        self.hidden_names: tuple[str, ...] = ()
        self.hidden_channels: list[int] = []

    # subclasses ---------------------------------------------------------------------------
    def build_network(self, hidden_channels: list[int]) -> nn.Module:
        raise NotImplementedError

    # setup --------------------------------------------------------------------------------
    def bind(self, spec: FeatureSpec, device: torch.device) -> None:
        super().bind(spec, device)
        self.logmel = LogMel(spec).to(device)
        self.stft_window = torch.hann_window(spec.win_length, device=device)

    def _build(self, detector: Detector, w: torch.Tensor, per_forward: int) -> None:
        """Probe the detector on clips `w: [B, N]` (forwards of at most `per_forward`) for the hidden layers'
        channel counts and their statistics: mean and standard deviation over every element of a layer's maps,
        summed in float64 so the result does not depend on how the clips were split."""
        self.hidden_names = hidden_layer_names(detector, self.layers)
        sums: list[torch.Tensor] = []
        with torch.no_grad():
            for j in range(0, len(w), per_forward):
                _, maps = detector_forward(detector, self.logmel(w[j:j + per_forward].to(self.device)),
                                           self.hidden_names)
                part = [torch.stack([m.double().sum(), m.double().pow(2).sum(), torch.tensor(float(m.numel()),
                                     dtype=torch.float64, device=m.device)]) for m in maps]
                sums = part if not sums else [a + b for a, b in zip(sums, part, strict=True)]
                self.hidden_channels = [m.shape[1] for m in maps]
        total, squares, count = torch.stack(sums).unbind(1)
        mean = total / count
        std = ((squares - count * mean.pow(2)).clamp_min(0.0) / (count - 1).clamp_min(1.0)).sqrt()
        self.network = self.build_network(self.hidden_channels).to(self.device)
        self.network.hidden.set_statistics(mean, std)

    def state_dict(self) -> dict[str, Any]:
        if self.network is None:
            return {}
        return {"hidden_names": list(self.hidden_names), "hidden_channels": list(self.hidden_channels),
                "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hidden_names = tuple(state["hidden_names"])
        self.hidden_channels = list(state["hidden_channels"])
        self.network = self.build_network(self.hidden_channels).to(self.device)
        self.network.load_state_dict(state["network"])
        self.network.eval()

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters()) if self.network is not None else 0

    # the model ----------------------------------------------------------------------------
    def split(self, detector: Detector, w: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """`w: [B, N]` -> (w_in, w_out, native grid mask or None, ŷ `[B]` the detector's decision on w)."""
        with torch.no_grad():
            x = self.logmel(w)
            score, maps = detector_forward(detector, x, self.hidden_names)
            decision = detector.decision(score).float()
        w_in, w_out, grid_mask = self.network(w, maps, tuple(x.shape[-2:]))
        return w_in, w_out, grid_mask, decision

    def loss_terms(self, detector: Detector, w: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor,
                   decision: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted L-MAC terms (scalars); the total loss is their sum.

        BCE(p, ŷ) is computed from the logit of p: in float32 the calibrated sigmoid rounds to exactly
        1 a few temperatures above tau, where BCE on p has no gradient left, and a masked clip is often
        that far off the normal manifold. The subtracted term is capped at 100 per clip, the bound
        BCE on probabilities has (its log is clamped at -100), so pushing the masked-out part ever
        further from the decision cannot outweigh the rest."""
        z_in, z_out = anomaly_logit(detector, self.logmel(torch.cat([w_in, w_out]))).chunk(2)
        bce_in = F.binary_cross_entropy_with_logits(z_in, decision)
        bce_out = F.binary_cross_entropy_with_logits(z_out, decision, reduction="none").clamp(max=BCE_CAP).mean()
        return {"in": self.lambda_in * bce_in, "out": -self.lambda_out * bce_out,
                "reg": self.lambda_reg * self.magnitude_penalty(w_in)}

    def magnitude_penalty(self, w: torch.Tensor) -> torch.Tensor:
        """mean log1p|STFT(w)| on the grid's STFT (the reference's sparsity term)."""
        spec = self.spec
        stft = torch.stft(w, spec.n_fft, spec.hop_length, spec.win_length, window=self.stft_window,
                          center=True, return_complex=True)
        return torch.log1p(stft.abs()).mean()

    def training_loss(self, detector: Detector, w: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss of clips `w: [B, N]` as fed (no augmentation) and its terms, detached scalars on the device
        (read on the host once per epoch, not per step)."""
        w_in, w_out, _, decision = self.split(detector, w)
        terms = self.loss_terms(detector, w, w_in, w_out, decision)
        total = sum(terms.values())
        return total, {**{k: v.detach() for k, v in terms.items()}, "anomalous": decision.float().mean()}

    # training -----------------------------------------------------------------------------
    def fit(self, detector: Detector, train: ClipTable, *, seed: int, budget: Budget) -> dict[str, Any]:
        """Train the interpreter only (the detector's weights, modes and gradients are left alone) on a seeded
        subset of `train_clips` normal clips (all if None), of which a seeded tenth (at least 2, once there
        are `MIN_SPLIT` clips; below that the training clips themselves) is held out for validation with
        its synthetic anomalies drawn once. Each epoch is one pass over the rest, `budget.batch_size` clips
        per optimiser step, accumulated over forwards of at most `examples_per_forward` clips; training
        stops at `budget.epochs`, on a validation plateau (`budget.patience` epochs without a relative gain
        of `budget.min_improvement`) or past `budget.max_seconds`, and keeps the best validation weights.
        The log holds the per-epoch curve (training terms and validation loss) and the stop reason."""
        if train.waveform is None or len(train) == 0:
            raise BenchmarkError(f"{type(self).__name__}: training needs waveforms of normal clips; this dataset "
                                 "has features only (the engine skips such cells: needs 'waveform')")
        g = torch.Generator().manual_seed(seed)
        waves = train.waveform[torch.randperm(len(train), generator=g)[: self.train_clips]]
        fit_waves, val_waves = split_interpreter_clips(waves, g)
        val_waves = self.with_anomalies(val_waves, torch.Generator().manual_seed(seed + 1))
        per_forward = self.examples_per_forward(self.device)
        with torch.random.fork_rng(devices=rng_devices(torch.device(self.device))):
            torch.manual_seed(seed)
            self._build(detector, fit_waves[:STATISTICS_CLIPS], per_forward)
        params = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        stopping, history, steps = EarlyStopping(self.network, budget), [], 0
        for _epoch in range(budget.epochs):
            self.network.train()
            order = torch.randperm(len(fit_waves), generator=g)
            sums: dict[str, torch.Tensor] = {}
            for i in range(0, len(fit_waves), budget.batch_size):
                w = self.with_anomalies(fit_waves[order[i:i + budget.batch_size]], g)
                for k, v in self.accumulate_gradients(detector, w, params, per_forward).items():
                    sums[k] = sums.get(k, 0.0) + v * len(w)
                optimizer.step()
                steps += 1
            val = self.validation_loss(detector, val_waves, per_forward)
            history.append({**{k: float(v) / len(fit_waves) for k, v in sums.items()}, "val_loss": val})
            if stopping.should_stop(val):
                break
        stopping.restore_best()
        return {"epochs": len(history), "steps": steps, "history": history, "capped_by_time": stopping.capped,
                "stop_reason": stopping.reason, "best_val_loss": stopping.best if history else None,
                "train_seconds": stopping.seconds, "train_clips": len(fit_waves), "val_clips": len(val_waves),
                "clip_epochs": len(history) * len(fit_waves), "parameters": self.n_parameters(),
                "hidden_layers": list(self.hidden_names)}

    def with_anomalies(self, w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`w: [B, N]` with a synthetic anomaly added to each clip with probability `augment`."""
        perturbed = torch.rand(len(w), generator=generator) < self.augment
        if not perturbed.any():
            return w
        return torch.where(perturbed[:, None], synthetic_anomalies(w, self.spec.sample_rate, generator), w)

    def validation_loss(self, detector: Detector, w: torch.Tensor, per_forward: int) -> float:
        """The total loss of clips `w: [M, N]` as fed, averaged over clips, without gradients."""
        self.network.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for j in range(0, len(w), per_forward):
                part = w[j:j + per_forward].to(self.device)
                total += self.training_loss(detector, part)[0].double() * len(part)
        return float(total) / len(w)

    def accumulate_gradients(self, detector: Detector, w: torch.Tensor, params: list[torch.Tensor],
                             per_forward: int) -> dict[str, torch.Tensor]:
        """Set `.grad` of `params` to the gradient of the loss of clips `w: [B, N]`, computed over
        forwards of at most `per_forward` clips; returns the loss terms averaged over the clips (detached
        scalars on the device)."""
        for p in params:
            p.grad = None
        means: dict[str, torch.Tensor] = {}
        for j in range(0, len(w), per_forward):
            part = w[j:j + per_forward].to(self.device)
            total, terms = self.training_loss(detector, part)
            share = len(part) / len(w)  # every term is a mean over clips: the shares add up to the batch mean
            # gradients for our parameters only: nothing accumulates on the detector's
            grads = torch.autograd.grad(total * share, params, allow_unused=True)
            for p, grad in zip(params, grads, strict=True):
                if grad is not None:
                    p.grad = grad if p.grad is None else p.grad + grad
            for k, v in {"loss": total.detach(), **terms}.items():
                means[k] = means.get(k, 0.0) + v.double() * share
        return means

    # explaining ---------------------------------------------------------------------------
    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        """Attribution = mel-power ratio of w_in to w on the grid, clipped to [0, 1]: `[B, F, T]`."""
        if batch.waveform is None:
            raise BenchmarkError(f"{type(self).__name__} explains waveforms; this batch has features only")
        if self.network is None:
            raise BenchmarkError(f"{type(self).__name__} is not trained: call fit or load_state_dict first")
        self.network.eval()
        parts: dict[str, list[torch.Tensor]] = {"attribution": [], "audio": [], "out": [], "mask": []}
        step = self.examples_per_forward(batch.x.device)
        with torch.no_grad():
            for i in range(0, len(batch), step):
                w = batch.waveform[i:i + step]
                w_in, w_out, grid_mask, _ = self.split(detector, w)
                ratio = energy_ratio(self.logmel.mel(w_in), self.logmel.mel(w))
                parts["attribution"].append(ratio)
                parts["mask"].append(ratio if grid_mask is None else grid_mask)
                parts["audio"].append(w_in)
                parts["out"].append(w_out)
        cat = {k: torch.cat(v) for k, v in parts.items()}
        return Explanation(attribution=cat["attribution"], audio=cat["audio"], mask=cat["mask"],
                           forward_passes=1.0, extra={"audio_masked_out": cat["out"]})


def energy_ratio(power_in: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """Mel power of the explanation relative to the input's, clipped to [0, 1]: `[B, F, T]`.

    Bins where the input is 1e-10 of its loudest bin or quieter count as empty (ratio 0)."""
    floor = 1e-10 * power.amax(dim=(1, 2), keepdim=True)
    return torch.where(power > floor, power_in / power.clamp_min(1e-30), torch.zeros_like(power)).clamp(0.0, 1.0)
