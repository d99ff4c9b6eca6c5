"""Occlusion (Zeiler & Fergus): the score drop when a patch of the grid is replaced by the baseline."""
from __future__ import annotations

import math

import torch

from benchmark.detector import Detector
from benchmark.errors import BenchmarkError
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import (
    baseline_forward_passes,
    baseline_of,
    check_baseline,
    clip_slices,
    samples_per_forward,
    score_function,
)


@explainers.register("occlusion", summary="Captum Occlusion: score drop when a patch is replaced by the reference",
                     version=1, test_params={"sliding_window_shapes": (32, 16)})
class OcclusionMap(Explainer):
    """Patches of `sliding_window_shapes = (mel bins, frames)` every `strides` (default: the window,
    i.e. non-overlapping; the last patch on each axis is cropped at the grid's edge). A bin's value
    is the mean of `score(x) − score(x with the patch replaced)` over the patches that cover it."""

    forward_weight = 1  # forward passes without gradients: the run's whole bound

    def __init__(self, sliding_window_shapes: tuple[int, int] = (16, 16), strides: tuple[int, int] | None = None,
                 baseline: str = "reference", max_examples_per_forward: int | None = None) -> None:
        super().__init__(max_examples_per_forward)
        if len(sliding_window_shapes) != 2 or (strides is not None and len(strides) != 2):
            raise BenchmarkError("occlusion: sliding_window_shapes and strides are (mel bins, frames) pairs, "
                                 f"got {sliding_window_shapes} and {strides}")
        self.window = tuple(int(n) for n in sliding_window_shapes)
        self.strides = tuple(int(n) for n in strides) if strides is not None else self.window
        self.baseline = check_baseline("occlusion", baseline)

    def window_on(self, grid: tuple[int, int]) -> tuple[int, int]:
        """The patch on an `(F, T)` grid: a window larger than the grid covers the whole axis."""
        return tuple(min(w, n) for w, n in zip(self.window, grid, strict=True))

    def n_patches(self, grid: tuple[int, int]) -> int:
        """Patches per clip on an `(F, T)` grid (Captum's count: the last shift may overhang)."""
        window = self.window_on(grid)
        return math.prod(math.ceil((n - w) / s) + 1 for n, w, s in zip(grid, window, self.strides, strict=True))

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        grid = tuple(batch.x.shape[-2:])
        window = self.window_on(grid)
        from captum.attr import Occlusion  # lazy: captum costs seconds at import
        method = Occlusion(score_function(detector))
        per_forward = self.examples_per_forward(batch.x.device)
        base = baseline_of(detector, batch.x, self.baseline)
        maps = []
        for rows in clip_slices(len(batch), per_forward):
            x = batch.x[rows]
            with torch.no_grad():
                maps.append(method.attribute(x, sliding_window_shapes=(1, *window), strides=(1, *self.strides),
                                             baselines=base[rows],
                                             perturbations_per_eval=samples_per_forward(len(x), per_forward)))
        return Explanation(attribution=torch.cat(maps)[:, 0],
                           forward_passes=1 + self.n_patches(grid) + baseline_forward_passes(self.baseline))
