"""The detector protocol: a differentiable anomaly score of the canonical log-mel.

Every detector maps `x: [B, 1, F, T]` to `score: [B]` (higher = more anomalous), differentiably, so
gradient explainers land on the canonical grid. After `fit`, the engine calls `calibrate` with the
scores of held-out normal clips and `set_eer_threshold` with the labelled test scores; all three
thresholds live in buffers, so they travel with the checkpoint.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Budget:
    """How much training a suite allows. `epochs` is a cap, not a schedule: training stops once the
    validation loss has not improved by `min_improvement` (relative, 0.5 %) on its best for `patience`
    epochs. `max_seconds` is only a safety cap (a run cut by it is not reproducible, and the cell says so in
    its log)."""

    epochs: int = 100
    patience: int = 10
    batch_size: int = 32
    max_seconds: float = 3600.0
    min_improvement: float = 0.005


class Detector(torch.nn.Module):
    """Base class. Subclasses implement `fit` and `score`; reconstruction models `reconstruct`."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("tau", torch.tensor(0.0))
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("eer_threshold", torch.tensor(0.0))
        self.register_buffer("normal_mean", torch.zeros(0))
        self.register_buffer("normal_median_score", torch.tensor(0.0))

    # --- the protocol -------------------------------------------------------------------------
    def build(self, grid: tuple[int, int], n_groups: int) -> None:
        """Create the shape-dependent modules for a `(F, T)` grid and `n_groups` machine/section
        classes. The engine calls it before `fit` and before `load_state_dict`; subclasses that
        override it call `super().build(grid, n_groups)` first."""
        self.normal_mean = torch.zeros(1, 1, *grid, device=self.tau.device)

    def fit(self, train: torch.Tensor, val: torch.Tensor, *, train_groups: torch.Tensor,
            val_groups: torch.Tensor, seed: int, budget: Budget,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Train on normal log-mels `train: [N, 1, F, T]`, early-stop on `val: [M, 1, F, T]`.

        `*_groups: [N]` long, the machine/section class of each clip (auxiliary-task detectors).
        The detector is already on its device; training tensors arrive on the CPU.
        """
        raise NotImplementedError

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly score `[B]` of `x: [B, 1, F, T]`; differentiable in x."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct its input")

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """A normal counterpart of x `[B, 1, F, T]`; by default the mean normal training log-mel."""
        return self.normal_mean.to(x.dtype).expand_as(x)

    def layers(self) -> dict[str, torch.nn.Module]:
        """Hookable modules by name, encoder order; the one named 'gradcam' is Grad-CAM's layer."""
        return {}

    # --- engine-side calibration ----------------------------------------------------------------
    def remember_normals(self, train: torch.Tensor) -> None:
        self.normal_mean = train.mean(dim=0, keepdim=True).detach().clone()

    def calibrate(self, val_scores: torch.Tensor) -> None:
        """tau = 0.9 quantile of normal validation scores; temperature = their IQR."""
        s = val_scores.detach().double()
        q25, q50, q75, q90 = torch.quantile(s, torch.tensor([0.25, 0.5, 0.75, 0.9], dtype=s.dtype, device=s.device))
        self.tau = q90.float().to(self.tau.device)
        iqr = float(q75 - q25)
        # one validation clip has no spread at all (its std is NaN, and max(nan, 1e-6) is NaN): it takes the floor
        spread = float(s.std()) if len(s) > 1 else 0.0
        self.temperature = torch.tensor(iqr if iqr > 0 else max(spread, 1e-6)).to(self.tau.device)
        self.normal_median_score = q50.float().to(self.tau.device)

    def set_eer_threshold(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """The threshold where false-positive and false-negative rates meet on labelled test clips."""
        keep = labels >= 0
        y, s = labels[keep].cpu().numpy(), scores[keep].detach().double().cpu().numpy()
        if len(set(y.tolist())) < 2:
            self.eer_threshold = self.tau.clone()
            return
        from sklearn.metrics import roc_curve  # lazy: a second of import that only training needs
        fpr, tpr, thr = roc_curve(y, s)
        i = int((abs(fpr - (1 - tpr))).argmin())
        self.eer_threshold = torch.tensor(float(thr[i]) if thr[i] != float("inf") else float(s.max()))

    def p_anom(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated anomaly probability `[B]` = sigmoid((score - tau) / T), differentiable."""
        return self.p_from_score(self.score(x))

    def p_from_score(self, s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((s - self.tau) / self.temperature)

    def decision(self, s: torch.Tensor) -> torch.Tensor:
        """Anomalous (1) or normal (0) at the EER threshold, from scores `[B]`."""
        return (s >= self.eer_threshold).long()


def batched_scores(detector: Detector, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Scores of a stack of log-mels without gradients, `[N]` on the CPU."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(detector.score(x[i:i + batch_size].to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def train_epochs(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    train: torch.Tensor,
    val: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    budget: Budget,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Minibatch training with early stopping on the validation loss; best weights restored.

    `loss_fn(x) -> scalar` computes the training loss of a batch on the model's device.
    """
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    stopping, epoch, curve = EarlyStopping(model, budget), 0, []
    for epoch in range(1, budget.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), budget.batch_size):
            xb = train[order[i:i + budget.batch_size]].to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(xb)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step(epoch - 1 + i / max(1, len(train)))
        model.eval()
        with torch.no_grad():  # summed on the device: one host sync per epoch, not per batch
            total = torch.zeros((), dtype=torch.float64, device=device)
            for i in range(0, len(val), budget.batch_size):
                part = val[i:i + budget.batch_size]
                total += loss_fn(part.to(device)).double() * len(part)
        v = float(total) / max(1, len(val))
        curve.append(v)
        if progress:
            progress(f"epoch {epoch} val {v:.4g}")
        if stopping.should_stop(v):
            break
    stopping.restore_best()
    return {"epochs": epoch, "best_val_loss": stopping.best, "capped_by_time": stopping.capped,
            "train_seconds": stopping.seconds, "stop_reason": stopping.reason, "val_curve": curve}


def band_statistics(train: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-band mean and standard deviation `[1, 1, F, 1]` of training log-mels `[N, 1, F, T]`, on
    `device`, for the standardisation buffers of a detector. A constant band (silence, padding) must not
    blow up: the deviation is floored at a thousandth of the overall spread."""
    mean = train.mean(dim=(0, 1, 3), keepdim=True)
    std = train.std(dim=(0, 1, 3), keepdim=True).clamp_min(1e-3 * float(train.std()) + 1e-8)
    return mean.to(device), std.to(device)


def rng_devices(device: torch.device) -> list[torch.device]:
    """The devices whose random state `torch.random.fork_rng` must save for work on `device`."""
    return [device] if device.type == "cuda" else []


class EarlyStopping:
    """Early stopping on a validation loss, shared by every training loop: keeps the best weights, stops
    after `budget.patience` epochs without a relative improvement of `budget.min_improvement` on the best
    loss (a smaller gain still keeps its weights, but does not reset the count) or past
    `budget.max_seconds` (the clock starts at construction), and puts the best weights back. Set `best` to
    a starting loss (the untrained model's) to keep the initial weights unless an epoch beats it.
    `reason` says why training ended: "plateau", "time" or "epochs" (the cap, the default)."""

    def __init__(self, model: torch.nn.Module, budget: Budget) -> None:
        self.model, self.budget = model, budget
        self.best, self.best_state, self.stale, self.capped = float("inf"), None, 0, False
        self.reason = "epochs"
        self.t0 = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0

    def should_stop(self, val_loss: float) -> bool:
        """Record an epoch's validation loss; True when training should stop."""
        significant = val_loss < self.best - max(1e-12, self.budget.min_improvement * abs(self.best)) \
            if self.best != float("inf") else val_loss < self.best
        if val_loss < self.best - 1e-12:
            self.best = val_loss
            self.best_state = {k: t.detach().clone() for k, t in self.model.state_dict().items()}
        self.stale = 0 if significant else self.stale + 1
        if self.budget.patience and self.stale >= self.budget.patience:  # 0: never on a plateau
            self.reason = "plateau"
            return True
        if self.seconds > self.budget.max_seconds:
            self.capped, self.reason = True, "time"
            return True
        return False

    def restore_best(self) -> None:
        """The best weights seen (if any epoch improved on the starting `best`), in eval mode."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()
