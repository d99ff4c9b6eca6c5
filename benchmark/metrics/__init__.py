"""Per-clip metrics: pure batched torch functions, each also registered with its metadata.

Importing this package registers every metric (the detection table, `benchmark.metrics.detection`,
is imported by the leaderboard). The functions below take explicit tensors and return one value per
clip `[B]`, or `[P, B]` / `[K, B]` for per-percentile / per-step metrics.
"""
from __future__ import annotations

from . import audio_quality, synthesis  # noqa: F401  (they register the listenable-explanation metrics)
from .bands import band_mass, band_mass_spearman, band_share, band_top_hit, band_top_hit_chance  # noqa: F401
from .complexity import complexity, sparseness
from .deletion import deletion_auc, insertion_auc, perturbation_curves
from .faithfulness import ff, ff_norm, ff_segment
from .lmac import ad, ag, ai, class_probabilities, explanation_mask, ff_out, fid_in, masked_in_out
from .localisation import (
    iou_at_percentile,
    pixel_auprc,
    pixel_auroc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from .robustness import infidelity, sensitivity_max
from .sanity import cascading_randomisation, randomisation_spearman, randomisation_ssim, spearman_correlation, ssim
from .temporal import chunk_f1, event_f1, frame_curve, peak_frames

__all__ = [
    "ff", "ff_norm", "ff_segment", "deletion_auc", "insertion_auc", "perturbation_curves",
    "chunk_f1", "event_f1", "frame_curve", "peak_frames",
    "relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game", "top_k_intersection",
    "pixel_auroc", "pixel_auprc", "iou_at_percentile",
    "ai", "ad", "ag", "ff_out", "fid_in", "class_probabilities", "explanation_mask", "masked_in_out",
    "sparseness", "complexity",
    "randomisation_spearman", "randomisation_ssim", "cascading_randomisation", "spearman_correlation", "ssim",
    "sensitivity_max", "infidelity",
]
