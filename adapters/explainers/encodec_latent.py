"""Latent-space EnCodec synthesis (AudioXgen, adapted to anomaly detectors): Integrated Gradients over the
codec's continuous latent, the top elements kept, the rest filled from a noise clip's latent, decoded
into a listenable explanation.

The attributed scalar is `score(LogMel(resample(Dec(z))))` with z = Enc(resample(w)) the 128 x 75 Hz
latent of the 24 kHz EnCodec architecture. The explanation keeps the `keep` fraction of latent elements
with the LARGEST attribution (the reference script sorted ascending and kept the least important ones)
and replaces the others with the latent of a fixed white-noise clip; the masked-out companion keeps the
complement. Codec: the official checkpoint (`pretrained=DIR|FILE|"hub"`, loaded offline), or by default a
small codec of the same architecture trained on the dataset's normal clips in `fit`; its reconstruction
quality is returned in the fit log and published per clip by the `codec_*` metrics, with whether it
reached the stated floor (`floor_ratio`, on the held-out normals).

Decisions in the codec's domain: a detector judges what it reads, and a decoded clip is not the clip (quick
synthetic planer: the 0.9 quantile of dense_ae's scores of decoded normals is twice its EER threshold), so at
the detector's own threshold every decoded input, the decoded normal ones included, read anomalous and the
synthesis sweep saturated. The codec is trained once per dataset and seed without the detector, so `fit`
decodes a seeded subset of the normals the train cell holds out from the detector (`held_out_split`) and keeps
their log-mels, decoded and as they are; `explain` scores both with the detector at hand and sets
`codec_threshold` at the detector's own operating point: the share of those normals its EER decision calls
normal is the share of their decoded copies the codec threshold calls normal. The synthesis metrics decide
every decoded input at it, as the input-IG baseline and the clip itself are decided at the EER threshold.
The codec, its latent, the decoded parts and the threshold stay in float32 whatever the run's precision (the
codec is shared by every detector and run; only the IG passes follow `--precision`).

Map on the canonical grid: the mel energy of the decoded kept part relative to the codec reconstruction,
clipped to [0, 1] (the L-MAC convention of §6.1, so both listenable explainers map alike). The left-out
elements are set to IG's own baseline for the map (zeros by default; the noise latent with
`baseline="noise"`): the map then shows where the energy of the elements IG credits lies, measured
against what IG treats as absent, rather than where the fill noise happens to be loud.
"""
from __future__ import annotations

from typing import Any

import torch

from benchmark.compute import examples_per_forward, full_precision
from benchmark.dataset import ClipTable
from benchmark.detector import Budget, Detector
from benchmark.errors import BenchmarkError
from benchmark.explainer import Explainer
from benchmark.features import LogMel
from benchmark.holdout import held_out_split
from benchmark.metrics.synthesis import calibrated_threshold, keep_mask, normal_share
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import clip_slices
from ._codec import (
    CALIBRATION_CLIPS,
    INPUT_RMS,
    LatentCodec,
    LatentSynthesis,
    codec_quality,
    pretrained_codec,
    rms,
    small_codec,
    train_codec,
)

BASELINES = ("zeros", "noise")
# The reconstruction floor: the held-out normals' log-mel L1 at most this share of the input-blind level (the
# mean normal log-mel's). A codec collapsed to one output scores ~1.2-1.4 of it; measured on the quick synthetic
# data, a codec that uses its latent reaches 0.83 (machines) and 0.87 (planer) in 10 epochs of batches of 8.
FLOOR_RATIO = 0.9


@explainers.register("encodec_latent", summary="Integrated Gradients over an EnCodec latent; top elements kept, the "
                     "rest from a noise latent, decoded into a listenable explanation", version=2,
                     needs={"gradients", "waveform", "training"},
                     test_params={"n_steps": 2, "n_filters": 2})
class EncodecLatent(Explainer):
    """`keep`: fraction of latent elements kept in the explanation. `pretrained`: a folder holding
    `encodec_24khz-d7cc33bc.th`, a state-dict file, or "hub"; None trains a small codec (`n_filters`
    base channels, `lstm` layers). `noise_db`: level of the fill noise relative to the median RMS of the
    normal training clips. `train_clips`: the codec learns from a seeded subset of that many of the normal
    clips the detector trains on (all if None); the ones the train cell holds out from the detector are its
    validation set. `floor_ratio`: the reconstruction floor, the held-out normals' mean log-mel L1 as a share
    of what the input-blind reconstruction (the mean normal log-mel) scores; short of it a plateau does not
    stop the codec's training, and the fit log and the per-clip `codec_floor_met` say whether it was
    reached. `internal_batch_size` (Captum's name) = `max_examples_per_forward`."""

    trains = True
    fit_uses_detector = False  # the codec learns the normal clips alone: one per dataset and seed
    # a 10-s clip through the decoder with gradients holds about 125 MB of activations (n_filters 4) at 24 kHz:
    # a quarter of the run's bound (8 clips per forward on a CPU)
    forward_weight = 4

    def __init__(self, keep: float = 0.21, n_steps: int = 50, method: str = "gausslegendre", baseline: str = "zeros",
                 pretrained: str | None = None, n_filters: int = 4, lstm: int = 1, noise_db: float = -20.0,
                 train_clips: int | None = 256, floor_ratio: float = FLOOR_RATIO,
                 internal_batch_size: int | None = None, max_examples_per_forward: int | None = None) -> None:
        if internal_batch_size and max_examples_per_forward and internal_batch_size != max_examples_per_forward:
            raise BenchmarkError("encodec_latent: internal_batch_size and max_examples_per_forward name the same "
                                 "bound; give one of them")
        if not 0.0 <= keep <= 1.0:
            raise BenchmarkError(f"encodec_latent: keep={keep} is not a fraction; use a value in [0, 1], e.g. 0.21")
        if baseline not in BASELINES:
            raise BenchmarkError(f"encodec_latent: unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")
        if train_clips is not None and train_clips < 1:
            raise BenchmarkError(f"encodec_latent: train_clips={train_clips}; use a positive count, or None for all "
                                 "normal training clips")
        if not floor_ratio > 0:
            raise BenchmarkError(f"encodec_latent: floor_ratio={floor_ratio}; use a positive share of the input-blind "
                                 f"log-mel L1, e.g. {FLOOR_RATIO}")
        super().__init__(internal_batch_size or max_examples_per_forward)
        self.train_clips, self.floor_ratio = train_clips, floor_ratio
        self.keep, self.n_steps, self.method, self.baseline = keep, n_steps, method, baseline
        self.pretrained, self.n_filters, self.lstm, self.noise_db = pretrained, n_filters, lstm, noise_db
        self.codec: LatentCodec | None = pretrained_codec(pretrained) if pretrained else None
        self.noise_rms: float | None = None
        self.quality: dict[str, Any] = {}
        # the held-out normals' log-mels, decoded by the codec and as they are: [M, 1, F, T] each
        self.calibration_x: torch.Tensor | None = None
        self.held_x: torch.Tensor | None = None

    def bind(self, spec, device: torch.device) -> None:
        super().bind(spec, device)
        if self.codec is not None:
            self.codec.to(device).eval().requires_grad_(False)

    # --- the codec and the fill noise, learned once per (dataset, seed) and shared by every detector -----
    def fit(self, detector: Detector, train: ClipTable, *, seed: int, budget: Budget) -> dict[str, Any]:
        if train.waveform is None:
            raise BenchmarkError("encodec_latent needs waveforms of the normal training clips; this dataset has "
                                 "features only")
        fit_rows, held_rows = held_out_split(len(train), seed)
        if self.train_clips is not None and self.train_clips < len(fit_rows):
            chosen = torch.randperm(len(fit_rows), generator=torch.Generator().manual_seed(seed))[: self.train_clips]
            fit_rows = fit_rows[chosen]
        fit, val = train.waveform[fit_rows], train.waveform[held_rows]
        band_mean = train.x[fit_rows].mean(dim=(0, 3), keepdim=True).to(self.device)
        self.noise_rms = float(rms(train.waveform).median()) * 10 ** (self.noise_db / 20)
        logmel = LogMel(self.spec).to(self.device)
        # a seeded subset of the held-out clips (they come in row order, often grouped by machine and section)
        calibration = torch.randperm(len(held_rows), generator=torch.Generator().manual_seed(seed))
        calibration = calibration[:CALIBRATION_CLIPS].sort().values
        with full_precision(self.device):
            if self.codec is None:
                torch.manual_seed(seed)
                self.codec = small_codec(self.n_filters, self.lstm).to(self.device)
                self.codec.input_gain.fill_(INPUT_RMS / float(rms(fit).median()))  # why: the note in _codec
                log = {"codec": "trained", **train_codec(self.codec, fit, val, logmel, seed=seed, budget=budget,
                                                          band_mean=band_mean, floor_ratio=self.floor_ratio)}
            else:
                log = {"codec": "pretrained"}
            self.codec.eval().requires_grad_(False)
            held = val[calibration].to(self.device)
            recon = self._synthesis(held.shape[1]).reconstruct(held)
            with torch.no_grad():
                self.calibration_x = logmel(recon).float()
            self.held_x = train.x[held_rows[calibration]].to(self.device).float()
            self.quality = codec_quality(recon, held, logmel, band_mean, self.floor_ratio)
        log.update(codec_params=sum(p.numel() for p in self.codec.parameters()), noise_rms=self.noise_rms,
                   **{f"val_{k}": v for k, v in self.quality.items()})
        return log

    def state_dict(self) -> dict[str, Any]:
        weights = None if self.pretrained else self.codec.state_dict()
        return {"codec": weights, "noise_rms": self.noise_rms, "quality": self.quality,
                "calibration_x": self.calibration_x.cpu(), "held_x": self.held_x.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["codec"] is not None:
            self.codec = small_codec(self.n_filters, self.lstm)
            self.codec.load_state_dict(state["codec"])
            self.codec.to(self.device).eval().requires_grad_(False)
        self.noise_rms, self.quality = state["noise_rms"], state["quality"]
        self.calibration_x, self.held_x = state["calibration_x"].to(self.device), state["held_x"].to(self.device)

    # --- explaining ----------------------------------------------------------------------------------
    def _synthesis(self, n_samples: int) -> LatentSynthesis:
        if self.codec is None or self.noise_rms is None:
            raise BenchmarkError("encodec_latent: the codec is not ready; call fit (or load_state_dict) first")
        return LatentSynthesis(self.codec, self.spec.sample_rate, n_samples, self.examples_per_forward(self.device))

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        if batch.waveform is None:
            raise BenchmarkError("encodec_latent needs waveforms; this batch has features only")
        w = batch.waveform
        synthesis = self._synthesis(w.shape[1])
        logmel = LogMel(self.spec).to(w.device)
        # the latent, the decoded parts and the threshold in float32 whatever the run's precision: the synthesis
        # metrics decode and decide in float32, and keep 100 % must give back the reconstruction exactly
        with torch.no_grad(), full_precision(w.device):
            z = torch.cat([synthesis.encode(w[rows]) for rows in clip_slices(len(w), synthesis.examples_per_forward)])
            fill = synthesis.noise_latent(self.noise_rms, w.device).expand_as(z)
            threshold = self._codec_threshold(detector)
        base = fill if self.baseline == "noise" else torch.zeros_like(z)
        attribution = self._latent_attribution(detector, synthesis, logmel, z, base).float()
        kept = keep_mask(attribution, self.keep)
        with full_precision(w.device):
            decoded = self._decode(synthesis, torch.stack([z, torch.where(kept, z, fill), torch.where(kept, fill, z),
                                                           torch.where(kept, z, base)]))
        recon, audio, masked_out, kept_part = decoded
        per_clip = lambda value: torch.full((len(w),), float(value), device=w.device)  # noqa: E731
        return Explanation(attribution=retained_energy(logmel, kept_part, recon), audio=audio,
                           # the calibration clips' detector passes (decoded and as they are) spread over the batch
                           forward_passes=self.n_steps + 2 * len(self.calibration_x) / len(w),
                           backward_passes=float(self.n_steps),
                           extra={"latent": z, "latent_attribution": attribution, "latent_fill": fill,
                                  "codec_reconstruction": recon, "synthesis": synthesis,
                                  "audio_masked_out": masked_out,
                                  "codec_threshold": per_clip(threshold),
                                  "codec_floor_met": per_clip(self.quality["floor_met"])})

    def _codec_threshold(self, detector: Detector) -> torch.Tensor:
        """The detector's threshold in the codec's domain, a scalar: at the detector's own operating point. The
        share of the held-out normals that its EER decision calls normal is the share of their decoded copies
        the codec threshold calls normal (the quantile of their scores), so the sweep decides decoded inputs as
        the input-IG baseline and the clip itself are decided. Computed per call, not cached: the sanity
        metrics re-explain with detectors randomised in place."""
        per_forward = examples_per_forward(self.device, self.forward_bound)  # plain passes, no gradient

        def scores(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([detector.score(x[rows]).float() for rows in clip_slices(len(x), per_forward)])
        return calibrated_threshold(scores(self.calibration_x), normal_share(scores(self.held_x),
                                                                               detector.eer_threshold))

    def _latent_attribution(self, detector: Detector, synthesis: LatentSynthesis, logmel: LogMel, z: torch.Tensor,
                            base: torch.Tensor) -> torch.Tensor:
        """IG of the anomaly score over the latent: `[B, 128, L] -> [B, 128, L]`. Clips go to Captum in
        groups of half the examples per forward, as Captum puts at least two steps of each into one forward."""
        from captum.attr import IntegratedGradients  # lazy: captum costs seconds at import
        method = IntegratedGradients(lambda latent: detector.score(logmel(synthesis.decode(latent))))
        per_forward = synthesis.examples_per_forward
        with torch.enable_grad():
            return torch.cat([method.attribute(z[rows], baselines=base[rows], n_steps=self.n_steps, method=self.method,
                                               internal_batch_size=per_forward).detach()
                              for rows in clip_slices(len(z), max(1, per_forward // 2))])

    @staticmethod
    def _decode(synthesis: LatentSynthesis, latents: torch.Tensor) -> torch.Tensor:
        """`[K, B, 128, L] -> [K, B, N]` without gradients, in chunks."""
        flat = latents.flatten(0, 1)
        with torch.no_grad():
            out = torch.cat([synthesis.decode(flat[rows])
                             for rows in clip_slices(len(flat), synthesis.examples_per_forward)])
        return out.reshape(*latents.shape[:2], -1)


def retained_energy(logmel: LogMel, part: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """Mel power of `part` relative to that of `whole`, clipped to [0, 1]: `[B, N], [B, N] -> [B, F, T]`."""
    with torch.no_grad():
        p_part, p_whole = logmel.mel(part), logmel.mel(whole)
    return (p_part / p_whole.clamp_min(torch.finfo(p_whole.dtype).tiny)).clamp(0.0, 1.0).contiguous()

