"""SLIME (SoundLIME, Mishra et al.) adapted to one-class detectors (the ASD paper): switch segments of
the log-mel off (replaced by the detector's reference), fit a locally weighted linear surrogate of the
calibrated anomaly probability (or the EER decision), and paint each segment's coefficient over its bins.

Shapes: `x: [B, 1, F, T]`; segment index `[F, T]` in `0..K-1`; on/off samples `z: [B, N, K]`.
"""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.errors import BenchmarkError
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import baseline_of

# time: 10 equal segments (SoundLIME temporal); frequency: 8 bands (the ASD paper);
# time_frequency: 6 time x 4 frequency cells (SoundLIME spectral)
DEFAULT_SEGMENTS: dict[str, int | tuple[int, int]] = {"time": 10, "frequency": 8, "time_frequency": (6, 4)}
TARGETS = ("probability", "decision")


def segment_index(grid: tuple[int, int], segmentation: str, n_segments: int | tuple[int, int]) -> torch.Tensor:
    """`[F, T]` long: the segment of every bin; equal-width time segments and/or mel bands.

    `n_segments` is a count for "time" and "frequency", `(n_time, n_frequency)` for "time_frequency";
    segment ids run over time fastest (`band * n_time + time_segment`).
    """
    n_mels, n_frames = grid
    if segmentation == "time_frequency":
        n_time, n_freq = n_segments
    elif segmentation == "time":
        n_time, n_freq = int(n_segments), 1
    elif segmentation == "frequency":
        n_time, n_freq = 1, int(n_segments)
    else:
        raise BenchmarkError(f"slime: unknown segmentation {segmentation!r}; use one of {', '.join(DEFAULT_SEGMENTS)}")
    if not (1 <= n_time <= n_frames and 1 <= n_freq <= n_mels):
        raise BenchmarkError(f"slime: {n_segments} segments do not fit a {n_mels}x{n_frames} grid; use fewer")
    time_segment = torch.arange(n_frames) * n_time // n_frames
    band = torch.arange(n_mels) * n_freq // n_mels
    return band[:, None] * n_time + time_segment[None, :]


def sample_segment_masks(n_clips: int, n_samples: int, n_segments: int, *, bernoulli: bool,
                         generator: torch.Generator) -> torch.Tensor:
    """`[B, N, K]` bool, True = segment kept; row 0 of every clip keeps everything (the input itself).

    `bernoulli=False` is LIME's draw (SoundLIME temporal): the number switched off is uniform in 1..K,
    the segments switched off uniform among all; `bernoulli=True` (SoundLIME time-frequency) switches
    each segment off with probability 0.5.
    """
    shape = (n_clips, n_samples, n_segments)
    if bernoulli:
        keep = torch.rand(shape, generator=generator) >= 0.5
    else:
        n_off = torch.randint(1, n_segments + 1, (n_clips, n_samples, 1), generator=generator)
        rank = torch.rand(shape, generator=generator).argsort(dim=-1).argsort(dim=-1)
        keep = rank >= n_off
    keep[:, 0] = True
    return keep


def kernel_weights(keep: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """`[B, N]`: sqrt(exp(−d²/w²)), d = cosine distance of each on/off vector to all-on (1 when all off)."""
    n_on = keep.sum(dim=-1).double()
    distance = 1.0 - torch.sqrt(n_on / keep.shape[-1])
    return torch.sqrt(torch.exp(-(distance**2) / kernel_width**2))


def weighted_ridge(features: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """Coefficients `[B, K]` of Σ_n w_n (y_n − b − z_n·β)² + α‖β‖² per clip (intercept unpenalised),
    solved exactly in float64 — sklearn `Ridge(alpha).fit(z, y, sample_weight=w).coef_`, batched.

    features `[B, N, K]`, target `[B, N]`, weight `[B, N]`.
    """
    z, y, w = features.double(), target.double(), weight.double()
    w_sum = w.sum(dim=1, keepdim=True)
    z_c = z - (w[..., None] * z).sum(dim=1, keepdim=True) / w_sum[..., None]
    y_c = y - (w * y).sum(dim=1, keepdim=True) / w_sum
    z_w = z_c * w[..., None]
    gram = z_w.transpose(1, 2) @ z_c + alpha * torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    return torch.linalg.solve(gram, (z_w * y_c[..., None]).sum(dim=1))


@explainers.register(
    "slime", summary="SoundLIME for one-class detectors: segments off -> reference, weighted Ridge surrogate",
    version=1, stochastic=True,
    test_params={"n_samples": 16},
)
class Slime(Explainer):
    """SLIME on the calibrated anomaly probability `p_anom` ("probability") or the EER decision.

    The default segmentation is time×frequency (6×4): it is the only one whose maps carry both the
    time and the frequency of an anomaly, so time-only metrics (FF, chunk F1) and time-frequency
    masks both get an informative map, while 24 components stay well determined by 1000 samples.
    "frequency" (8 bands, the ASD paper) gives maps constant over time; "time" (10 segments of 1 s
    for 10-s clips, SoundLIME temporal) maps constant over frequency.
    """

    forward_weight = 1  # forward passes without gradients: the run's whole bound

    def __init__(self, segmentation: str = "time_frequency", n_segments: int | tuple[int, int] | None = None,
                 n_samples: int = 1000, target: str = "probability", kernel_width: float = 0.25,
                 alpha: float = 1.0, max_examples_per_forward: int | None = None) -> None:
        super().__init__(max_examples_per_forward)
        if segmentation not in DEFAULT_SEGMENTS:
            raise BenchmarkError(f"slime: unknown segmentation {segmentation!r}; use one of "
                                 f"{', '.join(DEFAULT_SEGMENTS)}")
        if target not in TARGETS:
            raise BenchmarkError(f"slime: unknown target {target!r}; use one of {', '.join(TARGETS)}")
        if n_samples < 2:
            raise BenchmarkError(f"slime: n_samples={n_samples}; the surrogate needs at least 2 samples")
        self.segmentation, self.target = segmentation, target
        self.n_segments = DEFAULT_SEGMENTS[segmentation] if n_segments is None else n_segments
        self.n_samples, self.kernel_width, self.alpha = n_samples, kernel_width, alpha

    def _target(self, detector: Detector, x: torch.Tensor) -> torch.Tensor:
        s = detector.score(x)
        return detector.p_from_score(s) if self.target == "probability" else detector.decision(s).to(s.dtype)

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        x = batch.x
        n_clips, device = len(batch), x.device
        segments = segment_index(tuple(x.shape[-2:]), self.segmentation, self.n_segments).to(device)
        n_components = int(segments.max()) + 1
        keep = sample_segment_masks(n_clips, self.n_samples, n_components,
                                    bernoulli=self.segmentation == "time_frequency", generator=generator).to(device)
        reference = baseline_of(detector, x, "reference")
        anomaly = x - reference
        flat_keep = keep.flatten(0, 1).to(x.dtype)  # [B*N, K], clip-major
        bins = segments.flatten()
        per_forward = self.examples_per_forward(device)
        target = []
        # index_select, not advanced indexing: the latter is an order of magnitude slower on CPU here
        with torch.no_grad():
            for start in range(0, len(flat_keep), per_forward):
                rows = torch.arange(start, min(len(flat_keep), start + per_forward), device=device)
                clip = rows // self.n_samples
                on = flat_keep.index_select(0, rows).index_select(1, bins).view(len(rows), 1, *segments.shape)
                perturbed = reference.index_select(0, clip) + on * anomaly.index_select(0, clip)
                target.append(self._target(detector, perturbed))
        y = torch.cat(target).view(n_clips, self.n_samples)
        coef = weighted_ridge(keep, y, kernel_weights(keep, self.kernel_width), self.alpha)
        attribution = coef.index_select(1, bins).view(n_clips, *segments.shape)
        return Explanation(attribution=attribution.to(x.dtype), forward_passes=self.n_samples + 1.0)
