"""The evaluate cell: explain the selected test clips once (or take the stored explanations) and score every
metric that has no stored values yet.

A cell is assembled from parts, each a record of its own in the store: one explain part (the stored
explanations, `explain_step`) and one part per metric (its per-clip rows). A part found finished and intact
is reused, so adding a metric to a suite computes that metric alone over the stored maps (plus the
detector passes the metric itself needs); the cell's rows are its metric parts' rows in suite order. The
explainer is built only when something needs it: the explanations are not stored yet, a metric re-explains
(randomisation, sensitivity), or a metric needs an extra that cannot be stored (EnCodec's live codec).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .cells import EvaluateCell
from .compute import autocast
from .dataset import notice
from .detector import Detector
from .errors import CellFailure
from .explain_step import (
    EXPLANATION_FILE,
    StoredExplanations,
    batch_seed,
    check_explanation,
    example_files,
    prepare_explainer,
    select_clips,
)
from .metrics.context import MetricContext, MetricResult
from .needs import TRUTH_NEEDS, dataset_provides, metric_unmet, needs_live
from .outcome import Outcome
from .registry import registry
from .store import DONE, FAILED, SKIPPED, DamagedFile
from .training import clip_rows
from .types import Batch, Explanation
from .workspace import Workspace, seed_everything

__all__ = ["run_evaluate_cell", "select_clips", "metric_subset"]


def metric_subset(n_clips: int, max_clips: int | None, seed: int) -> torch.Tensor:
    """Which of the cell's `n_clips` clips a metric with a clip budget scores: `[n_clips]` bool, a seeded
    subset of `max_clips` (all when there is no budget). Budgets of one seed are nested."""
    keep = torch.ones(n_clips, dtype=torch.bool)
    if max_clips is not None and max_clips < n_clips:
        order = torch.randperm(n_clips, generator=torch.Generator().manual_seed(seed * 31 + 7))
        keep[:] = False
        keep[order[:max_clips]] = True
    return keep


class _Explainer:
    """The cell's explainer, built (and trained or loaded) on first use only; `fit_s` and `fit_clip_epochs`
    charge the interpreter training this cell did (zero when it loaded a stored one)."""

    def __init__(self, cell: EvaluateCell, ws: Workspace, detector: Detector, spec):
        self.cell, self.ws, self.detector, self.spec = cell, ws, detector, spec
        self._made: tuple | None = None
        self.fit_s, self.fit_clip_epochs = 0.0, 0

    def get(self):
        if self._made is None:
            t0 = time.monotonic()
            self._made = prepare_explainer(self.cell, self.ws, self.detector, self.spec)
            _, log, trained = self._made
            if trained:
                self.fit_s, self.fit_clip_epochs = time.monotonic() - t0, int(log.get("clip_epochs", 0))
        return self._made

    @property
    def made(self) -> bool:
        return self._made is not None


def run_evaluate_cell(cell: EvaluateCell, ws: Workspace, progress: Callable[[str], None] | None = None) -> Outcome:
    t0, c0 = time.monotonic(), time.process_time()
    evaluate = dict(cell.evaluate)
    seed = cell.train.seed
    dataset = ws.dataset(cell.train.dataset)
    test = ws.table(cell.train.dataset, "test")
    detector = ws.detector(cell.train.key, cell.train.detector)
    capabilities = registry("detector").get(cell.train.detector.name).capabilities
    if ws.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ws.device)
    provides = dataset_provides(dataset)
    chosen = select_clips(test, evaluate, seed)
    store = ws.store
    explain_part = store.cell_dir(cell.explain_key).relative_to(store.root).as_posix() + "/" + EXPLANATION_FILE
    stored = None
    if store.is_done(cell.explain_key):
        try:
            stored = StoredExplanations.load(store, explain_part, len(chosen))
        except DamagedFile as exc:
            notice(f"{exc}: explaining again")
    # metric values stand on the stored explanations: explaining again (damaged, lost) recomputes every metric
    pending = [i for i, key in enumerate(cell.metric_keys) if stored is None or not store.is_done(key)]
    live_only = stored.live_only if stored is not None else ()
    live = stored is None or any(needs_live(cell.metrics[i].plugin.needs, live_only) for i in pending)
    explainer = _Explainer(cell, ws, detector, dataset.spec)

    ident = dict(dataset=cell.train.dataset.label, detector=cell.train.detector.name, seed=seed,
                 explainer=cell.explainer.name)
    new_rows: dict[int, list[dict[str, Any]]] = {i: [] for i in pending}
    skipped: dict[int, str] = {}
    failures: dict[int, str] = {}
    metric_passes = {i: [0.0, 0.0] for i in pending}
    metric_seconds = {i: 0.0 for i in pending}
    budgets = {i: metric_subset(len(chosen), cell.metrics[i].max_clips, seed) for i in pending}
    explained: list[Explanation] = []
    examples: dict[str, bytes] = {}
    explain_s, explainer_passes = 0.0, [0.0, 0.0]
    bs = evaluate["batch_size"]
    n_batches = (len(chosen) + bs - 1) // bs

    def explain_with(det: Detector, b: Batch, _bi: int) -> Explanation:
        """The explainer's forward passes at the cell's precision; its maps in float32 for the metrics."""
        made = explainer.get()[0]
        with autocast(ws.device, cell.train.precision):
            expl = made.explain(det, b, generator=torch.Generator().manual_seed(batch_seed(seed, _bi)))
        return expl.in_float32()

    for bi in range(n_batches):
        lo, hi = bi * bs, min((bi + 1) * bs, len(chosen))
        idx = chosen[lo:hi]
        batch = test.batch(idx).to(ws.device)
        if live:
            te = time.monotonic()
            seed_everything(batch_seed(seed, bi))
            expl = explain_with(detector, batch, bi)
            explain_s += time.monotonic() - te
            check_explanation(expl, batch, cell.explainer.name)
            explainer_passes[0] += expl.forward_passes * len(batch)
            explainer_passes[1] += expl.backward_passes * len(batch)
            if stored is None:
                explained.append(expl)
                if bi == 0:
                    examples = example_files(store, cell, batch, expl, dataset.spec.sample_rate, evaluate["examples"])
        else:
            expl = stored.rows(lo, hi, ws.device)
        if pending:
            _score_batch(cell, pending, batch, expl, detector, dataset.spec, capabilities, provides, live_only,
                         explain=lambda det, b, _bi=bi: explain_with(det, b, _bi), seed=seed, bi=bi,
                         in_batch=torch.arange(lo, hi), budgets=budgets, forward_bound=ws.forward_bound,
                         base=clip_rows(test, idx.tolist(), **ident), new_rows=new_rows, skipped=skipped,
                         failures=failures, passes=metric_passes, seconds=metric_seconds)
        if progress:
            progress(f"batch {bi + 1}/{n_batches}")

    parts: list[Outcome] = []
    interpreter = store.checkpoint_relpath(cell.interpreter_key)
    fit_log: dict[str, Any] = {}
    interpreter_files: dict[str, bytes] = {}
    if explainer.made:
        _, fit_log, interpreter_files = explainer.get()
    n = max(1, len(chosen))
    if stored is None:
        part = StoredExplanations.stack(explained) if explained else StoredExplanations(
            attribution=torch.zeros(0, *test.x.shape[-2:]))
        # the detector checkpoint it explained: a detector trained anew (other bytes) makes the explanations stale
        uses = [store.checkpoint_relpath(cell.train.key)]
        if explainer.made and explainer.get()[0].trains and not interpreter_files:
            uses.append(interpreter)
        parts.append(Outcome(cell.explain_key, {
            "cell": "explain", "label": f"explain {cell.label.removeprefix('evaluate ')}", "status": DONE,
            "live_only": list(part.live_only), "fit_log": fit_log, "explain_key": cell.explain_key,
            "clip_ids": [test.ids[i] for i in chosen.tolist()],
            "cost": {"explain_s": explain_s, "n_clips": len(chosen), "explainer_forward": explainer_passes[0] / n,
                     "explainer_backward": explainer_passes[1] / n}}, None,
            files={explain_part: part.to_bytes(), **examples, **interpreter_files}, uses=uses))
    for i in pending:
        if i in failures:
            continue
        m = cell.metrics[i]
        record = {"cell": "metric", "label": f"metric {m.name} of {cell.label.removeprefix('evaluate ')}",
                  "metric": m.name, "status": SKIPPED if i in skipped else DONE,
                  "cost": {"seconds": metric_seconds[i], "forward": metric_passes[i][0] / n,
                           "backward": metric_passes[i][1] / n}}
        if i in skipped:
            record["reason"] = skipped[i]
        parts.append(Outcome(cell.metric_keys[i], record, None if i in skipped else new_rows[i]))

    rows: list[dict[str, Any]] = []
    skipped_metrics: dict[str, str] = {}
    part_files: list[str] = []
    for i, key in enumerate(cell.metric_keys):
        name = cell.metrics[i].name
        if i in failures:
            continue
        if i in skipped:
            skipped_metrics[name] = skipped[i]
            continue
        if i in new_rows:
            values = new_rows[i]
        else:
            record = store.status(key)
            if record["status"] == SKIPPED:
                skipped_metrics[name] = record.get("reason", "")
                continue
            values = store.rows([key]).to_dict("records")
        rows.extend(values)
        part_files.append(store.rows_relpath(key))
    # the explanations, their examples and the interpreter they came from
    part_files += list(parts[0].files) + parts[0].uses if stored is None else \
        list((store.status(cell.explain_key) or {}).get("files", {}))
    cost = {"wall_s": time.monotonic() - t0, "cpu_s": time.process_time() - c0, "explain_s": explain_s,
            "n_clips": len(chosen),
            "fit_s": explainer.fit_s, "fit_clip_epochs": explainer.fit_clip_epochs,
            "explanation": "stored" if stored is not None and not live else ("re-explained" if stored else "computed"),
            "metrics_computed": len(pending), "metrics_reused": len(cell.metrics) - len(pending),
            "explainer_forward": explainer_passes[0] / n, "explainer_backward": explainer_passes[1] / n,
            # s(x) of every clip, once per batch for all the metrics (none when every metric was stored)
            "score_forward": 1.0 if pending and len(chosen) else 0.0,
            "metric_forward": sum(p[0] for p in metric_passes.values()) / n,
            "metric_backward": sum(p[1] for p in metric_passes.values()) / n,
            "peak_memory_mb": _peak_memory_mb(ws.device)}
    failed = {cell.metrics[i].name: why for i, why in failures.items()}
    record = {**cell.describe(), "status": FAILED if failed else DONE, "skipped_metrics": skipped_metrics,
              "failed_metrics": failed, "fit_log": fit_log, "cost": cost}
    if failed:
        record["reason"] = "; ".join(f"{k}: {v}" for k, v in sorted(failed.items()))
    return Outcome(cell.key, record, rows, uses=part_files, parts=parts)


def _score_batch(cell: EvaluateCell, pending: list[int], batch: Batch, expl: Explanation, detector: Detector, spec,
                 capabilities, provides: set[str], live_only: tuple[str, ...], *, explain, seed: int, bi: int,
                 in_batch: torch.Tensor, budgets: dict[int, torch.Tensor], forward_bound: int | None,
                 base: list[dict], new_rows: dict,
                 skipped: dict, failures: dict, passes: dict, seconds: dict) -> None:
    """Score the pending metrics on one batch: each on its clips (truth-carrying ones, its clip budget), with a
    fresh generator of the batch's seed, charged the detector passes it spent."""
    with torch.no_grad():
        scores = detector.score(batch.x)
    ctx = MetricContext(batch=batch, explanation=expl, detector=detector, spec=spec, scores=scores, explain=explain,
                        generator=torch.Generator(), forward_bound=forward_bound)
    for i in pending:
        if i in skipped or i in failures:
            continue
        metric = cell.metrics[i]
        plugin = metric.plugin
        reason = metric_unmet(plugin.needs, provides, expl, capabilities, live_only)
        if reason:
            skipped[i] = reason
            continue
        keep = budgets[i][in_batch]
        if plugin.needs & TRUTH_NEEDS:  # scored only on the clips that carry truth
            keep = keep & batch.has_truth.cpu()
        sub = torch.nonzero(keep).flatten()
        if len(sub) == 0:
            continue
        mctx = ctx.subset(sub)
        mctx.generator = torch.Generator().manual_seed(seed * 7_919 + bi)
        seed_everything(seed * 7_919 + bi)
        t = time.monotonic()
        try:
            result = plugin.factory(mctx, **metric.params)
            new_rows[i].extend(_metric_rows(base, sub.tolist(), metric.name, result))  # all params or none
        except Exception as exc:  # one metric's failure is recorded; the others still count
            failures[i] = f"{type(exc).__name__}: {exc}"
            continue
        finally:
            seconds[i] += time.monotonic() - t
        passes[i][0] += result.forward_passes * len(sub)
        passes[i][1] += result.backward_passes * len(sub)


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

