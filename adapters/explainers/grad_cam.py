"""Grad-CAM (Selvaraju et al.) on the detector's 'gradcam' layer, upsampled to the grid."""
from __future__ import annotations

import torch

from benchmark.detector import Detector
from benchmark.errors import BenchmarkError
from benchmark.explainer import Explainer
from benchmark.registry import explainers
from benchmark.types import Batch, Explanation

from ._captum import clip_slices, score_function

LAYER = "gradcam"


@explainers.register("grad_cam", summary="Captum LayerGradCam on layers()['gradcam'], signed, bilinear to the grid",
                     version=1, needs={"gradients", "layers"})
class GradCam(Explainer):
    """Channel weights = spatial mean of the score's gradient; map = weighted channel sum, kept
    signed by default (`relu_attributions=False`, the planer paper), resized bilinearly to `[F, T]`."""

    def __init__(self, relu_attributions: bool = False, max_examples_per_forward: int | None = None) -> None:
        super().__init__(max_examples_per_forward)
        self.relu_attributions = relu_attributions

    def explain(self, detector: Detector, batch: Batch, *, generator: torch.Generator) -> Explanation:
        layers = detector.layers()
        if LAYER not in layers:
            raise BenchmarkError(f"grad_cam: detector {type(detector).__name__} names no {LAYER!r} layer in "
                                 f"layers() (it has: {', '.join(layers) or 'none'}); name its last encoder conv "
                                 f"{LAYER!r}")
        from captum.attr import LayerAttribution, LayerGradCam  # lazy: captum costs seconds at import
        method = LayerGradCam(score_function(detector), layers[LAYER])
        grid = tuple(batch.x.shape[-2:])
        maps = []
        with torch.enable_grad():
            for rows in clip_slices(len(batch), self.examples_per_forward(batch.x.device)):
                cam = method.attribute(batch.x[rows], relu_attributions=self.relu_attributions).detach()
                if cam.dim() != 4:
                    raise BenchmarkError(f"grad_cam: layer {LAYER!r} of {type(detector).__name__} outputs "
                                         f"{cam.dim()}-d maps {tuple(cam.shape)}; Grad-CAM needs a conv feature "
                                         "map [B, C, h, w]")
                maps.append(LayerAttribution.interpolate(cam, grid, interpolate_mode="bilinear"))
        return Explanation(attribution=torch.cat(maps)[:, 0], forward_passes=1.0, backward_passes=1.0)
