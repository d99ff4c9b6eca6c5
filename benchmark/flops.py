"""FLOPs of a detector's passes, counted by torch's `FlopCounterMode` on one clip.

Three kinds of pass, per time-frequency bin of the clip they ran on (the estimate scales them by a suite's
mel bands x frames):
- `forward`: the anomaly score of one clip;
- `backward_input`: the gradient of the score with respect to the input, detector frozen (what gradient
  explainers, Captum's attributions and interpreter training run);
- `backward_train`: the gradient of the score with respect to the detector's weights (what a training step
  runs; the detector's own training loss may differ from its score, e.g. an auxiliary classifier's head).
Counted: matrix products, convolutions and attention (what `FlopCounterMode` registers); element-wise work
is not, so the counts are a lower bound on the arithmetic and, on a GPU, the FLOP-bound part of the time.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def _counted(run) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def pass_flops(detector: torch.nn.Module, clip: torch.Tensor) -> dict[str, float]:
    """FLOPs per time-frequency bin of the three passes of a trained `detector` on `clip: [1, 1, F, T]` (on its device).
    The detector's `requires_grad` flags and train/eval mode are restored."""
    bins = clip.shape[-2] * clip.shape[-1]
    flags = [p.requires_grad for p in detector.parameters()]
    was_training = detector.training
    detector.eval()
    try:
        detector.requires_grad_(False)
        with torch.no_grad():
            forward = _counted(lambda: detector.score(clip))
        x = clip.detach().clone().requires_grad_(True)
        backward_input = _counted(lambda: detector.score(x).sum().backward()) - forward
        detector.requires_grad_(True)
        backward_train = _counted(lambda: detector.score(clip.detach()).sum().backward()) - forward
    finally:
        for p, flag in zip(detector.parameters(), flags, strict=True):
            p.requires_grad_(flag)
            p.grad = None
        detector.train(was_training)
    return {"forward": forward / bins, "backward_input": backward_input / bins,
            "backward_train": backward_train / bins}
