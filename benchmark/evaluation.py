"""The evaluate cell: explain selected test clips with one explainer and score every metric on them."""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import soundfile as sf
import torch

from .cells import DATASET_NEEDS, EvaluateCell
from .dataset import ClipTable, Dataset, notice
from .detector import Budget, Detector
from .errors import CellFailure
from .executors import Outcome
from .explainer import Explainer
from .metrics.context import MetricContext, MetricResult
from .registry import registry
from .store import DONE, FAILED, DamagedFile, checkpoint_bytes
from .training import clip_rows
from .types import Batch, Explanation
from .workspace import Workspace, seed_everything

TRUTH_NEEDS = {"tf_mask", "intervals", "audio"}  # metrics scored only on clips that carry truth


def dataset_provides(dataset: Dataset) -> set[str]:
    caps = set(dataset.truth)
    if dataset.has_waveforms:
        caps.add("waveform")
    return caps


def select_clips(table: ClipTable, evaluate: dict[str, Any], seed: int) -> torch.Tensor:
    """Row indices of the clips to explain: anomalous (or all labelled) test clips, a seeded subset,
    in table order. The subset does not depend on the detector or explainer, so cells share clips."""
    keep = table.labels == 1 if evaluate["clips"] == "anomalous" else table.labels >= 0
    rows = torch.nonzero(keep).flatten()
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    return rows[order[: evaluate["max_clips"]]].sort().values


def check_explanation(expl: Explanation, batch: Batch, name: str) -> None:
    b, _, n_mels, n_frames = batch.x.shape
    if tuple(expl.attribution.shape) != (b, n_mels, n_frames):
        raise CellFailure(f"explainer {name} returned attribution of shape {tuple(expl.attribution.shape)}, "
                          f"want {(b, n_mels, n_frames)}")
    if not torch.isfinite(expl.attribution).all():
        raise CellFailure(f"explainer {name} returned non-finite attribution values")


def metric_needs_unmet(needs: frozenset[str], provides: set[str], explanation: Explanation,
                       detector: Detector) -> str | None:
    """Why a metric cannot be computed in this cell, or None. `explanation_audio` needs the explainer's
    audio; any other `explanation_<key>` needs `explanation.extra[<key>]`."""
    for need in sorted(needs):
        if need in DATASET_NEEDS and need not in provides:
            return f"needs {need}, which the dataset does not provide"
        if need == "explanation_audio":
            if explanation.audio is None:
                return "needs a listenable explanation, which this explainer does not return"
        elif need.startswith("explanation_") and need.removeprefix("explanation_") not in explanation.extra:
            return f"needs the explainer's {need.removeprefix('explanation_')}, which this explainer does not return"
        if need == "reconstruction" and "reconstructs" not in _capabilities(detector):
            return "needs a reconstructing detector"
    return None


def _capabilities(detector: Detector) -> frozenset[str]:
    for plugin in registry("detector").plugins():
        if isinstance(detector, plugin.factory):
            return plugin.capabilities
    return frozenset()


def prepare_explainer(cell: EvaluateCell, ws: Workspace, detector: Detector,
                      spec) -> tuple[Explainer, dict, dict[str, bytes]]:
    """The cell's explainer bound to the device, trained (or loaded) where it learns; its fit log; and the
    interpreter checkpoint it trained, for the driver to store (an unreadable stored one is trained anew)."""
    explainer = registry("explainer").make(cell.explainer.name, **cell.explainer.params)
    explainer.bind(spec, ws.device)
    log: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if explainer.trains:
        try:
            state = ws.store.load_checkpoint(cell.interpreter_key, ws.device)
        except DamagedFile as exc:
            notice(f"{exc}: training the interpreter again")
            state = None
        if state is None:
            seed_everything(cell.train.seed)
            train = ws.table(cell.train.dataset, "train")
            log = explainer.fit(detector, train.where(train.labels == 0), seed=cell.train.seed,
                                budget=cell.explainer.budget or Budget())
            files[ws.store.checkpoint_relpath(cell.interpreter_key)] = checkpoint_bytes(
                {"state": explainer.state_dict(), "log": log})
        else:
            explainer.load_state_dict(state["state"])
            log = state.get("log", {})
    return explainer, log, files


def run_evaluate_cell(cell: EvaluateCell, ws: Workspace, progress: Callable[[str], None] | None = None):
    t0 = time.monotonic()
    evaluate = dict(cell.evaluate)
    seed = cell.train.seed
    dataset = ws.dataset(cell.train.dataset)
    test = ws.table(cell.train.dataset, "test")
    detector = ws.detector(cell.train.key, cell.train.detector)
    if ws.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ws.device)
    seed_everything(seed)
    explainer, fit_log, files = prepare_explainer(cell, ws, detector, dataset.spec)
    provides = dataset_provides(dataset)
    chosen = select_clips(test, evaluate, seed)
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    failures: dict[str, str] = {}
    passes = {"explainer_forward": 0.0, "explainer_backward": 0.0, "metric_forward": 0.0, "metric_backward": 0.0}
    ident = dict(dataset=cell.train.dataset.name, detector=cell.train.detector.name, seed=seed,
                 explainer=cell.explainer.name)
    n_batches = (len(chosen) + evaluate["batch_size"] - 1) // evaluate["batch_size"]
    explain_seconds = 0.0
    for bi in range(n_batches):
        idx = chosen[bi * evaluate["batch_size"]:(bi + 1) * evaluate["batch_size"]]
        batch = test.batch(idx).to(ws.device)

        def explain_with(det: Detector, b: Batch, _bi: int = bi) -> Explanation:
            return explainer.explain(det, b, generator=torch.Generator().manual_seed(seed * 1_000_003 + _bi))

        te = time.monotonic()
        expl = explain_with(detector, batch)
        explain_seconds += time.monotonic() - te
        check_explanation(expl, batch, cell.explainer.name)
        passes["explainer_forward"] += expl.forward_passes * len(batch)
        passes["explainer_backward"] += expl.backward_passes * len(batch)
        with torch.no_grad():
            scores = detector.score(batch.x)
        base = clip_rows(test, idx.tolist(), **ident)
        contexts: dict[bool, tuple[torch.Tensor, MetricContext]] = {}  # one per clip subset, shared by metrics
        for metric in cell.metrics:
            if metric.name in skipped or metric.name in failures:
                continue
            plugin = metric.plugin
            reason = metric_needs_unmet(plugin.needs, provides, expl, detector)
            if reason:
                skipped[metric.name] = reason
                continue
            truth_only = bool(plugin.needs & TRUTH_NEEDS)
            if truth_only not in contexts:
                sub = torch.nonzero(batch.has_truth).flatten() if truth_only else torch.arange(len(batch))
                contexts[truth_only] = (sub, MetricContext(
                    batch=batch.select(sub), explanation=expl.select(sub.to(expl.attribution.device)),
                    detector=detector, spec=dataset.spec, scores=scores[sub.to(scores.device)],
                    explain=explain_with, generator=torch.Generator().manual_seed(seed * 7_919 + bi)))
            sub, ctx = contexts[truth_only]
            if len(sub) == 0:
                continue
            try:
                result = plugin.factory(ctx, **metric.params)
                rows.extend(_metric_rows(base, sub.tolist(), metric.name, result))  # all params or none
            except Exception as exc:  # one metric's failure is recorded; the others still count
                failures[metric.name] = f"{type(exc).__name__}: {exc}"
                continue
            passes["metric_forward"] += result.forward_passes * len(sub)
            passes["metric_backward"] += result.backward_passes * len(sub)
        if bi == 0:
            files.update(example_files(ws, cell, batch, expl, dataset.spec.sample_rate, evaluate["examples"]))
        if progress:
            progress(f"batch {bi + 1}/{n_batches}")
    n = max(1, len(chosen))
    cost = {"wall_s": time.monotonic() - t0, "explain_s": explain_seconds, "n_clips": len(chosen),
            **{k: v / n for k, v in passes.items()}, "peak_memory_mb": _peak_memory_mb(ws.device)}
    record = {**cell.describe(), "status": FAILED if failures else DONE, "skipped_metrics": skipped,
              "failed_metrics": failures, "fit_log": fit_log, "cost": cost}
    if failures:
        record["reason"] = "; ".join(f"{k}: {v}" for k, v in sorted(failures.items()))
    uses = [ws.store.checkpoint_relpath(cell.interpreter_key)] if explainer.trains else []
    return Outcome(cell.key, record, rows, files=files, uses=uses)


def _metric_rows(base: list[dict], sub: list[int], name: str, result: MetricResult) -> list[dict]:
    rows: list[dict] = []
    for param, values in result.values.items():
        v = values.detach().double().cpu()
        if v.shape != (len(sub),):
            raise CellFailure(f"metric {name}[{param}] returned shape {tuple(v.shape)}, want ({len(sub)},)")
        if not torch.isfinite(v).all():
            raise CellFailure(f"metric {name}[{param}] returned non-finite values")
        chance = result.chance.get(param) if isinstance(result.chance, dict) else result.chance
        chance = None if chance is None else chance.detach().double().cpu()
        for j, i in enumerate(sub):
            rows.append({**base[i], "metric": name, "param": str(param), "value": float(v[j]),
                         "chance": float(chance[j]) if chance is not None else float("nan")})
    return rows


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def example_files(ws: Workspace, cell: EvaluateCell, batch: Batch, expl: Explanation, sample_rate: int,
                  count: int) -> dict[str, bytes]:
    """A few clips per cell for the gallery: log-mel, attribution and truth (npz), explanation audio (wav), as
    store-relative path -> bytes for the driver to write."""
    t = cell.train
    folder = ws.store.examples_relpath(cell.key, t.dataset.name, t.detector.name, f"{cell.explainer.name}-s{t.seed}")
    files: dict[str, bytes] = {}
    for i in range(min(count, len(batch))):
        arrays = {"x": batch.x[i, 0].detach().cpu().numpy().astype(np.float16),
                  "attribution": expl.attribution[i].detach().float().cpu().numpy().astype(np.float16)}
        if batch.tf_mask is not None:
            arrays["tf_mask"] = batch.tf_mask[i].cpu().numpy()
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        stem = batch.ids[i].replace("/", "__")
        files[f"{folder}/{stem}.npz"] = buf.getvalue()
        if expl.audio is not None:
            waves = (("input", batch.waveform), ("explanation", expl.audio),
                     ("masked_out", expl.extra.get("audio_masked_out")))
            for tag, wave in waves:
                if wave is None:
                    continue
                w = wave[i].detach().float().cpu().numpy()
                peak = float(np.abs(w).max()) or 1.0
                out = io.BytesIO()
                sf.write(out, w / max(1.0, peak), sample_rate, format="WAV", subtype="PCM_16")
                files[f"{folder}/{stem}.{tag}.wav"] = out.getvalue()
    return files
