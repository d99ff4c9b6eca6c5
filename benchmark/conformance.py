"""Conformance checks of registered plugins of all four kinds on tiny self-made data.

`python -m benchmark check [dataset|detector|explainer|metric] [NAME] [--detector D] [--device cpu|cuda]`
trains the registered detectors (or only `--detector D`) for one epoch on a few synthetic 0.5-s clips
(128x16 on the dcase grid) and runs every applicable explainer on a small batch; `check metric` computes
each metric on a `dense_ae` map; `check dataset` reads the first clips of each split (`--data-root` for
data on disk). What an adapter must satisfy:

- detector: scores `[B]`, finite and differentiable in x; `reference(x)` shaped like x; a
  `state_dict` round trip reproduces the scores (the engine caches detectors that way).
- explainer: attribution `[B, F, T]`, floating, finite, on the batch's device; the same generator
  seed gives identical maps (a `stochastic` explainer gives another map for another seed); no
  gradient left on the detector's parameters; the detector's weights, buffers and train/eval modes
  unchanged; pass counts finite and non-negative; `audio` `[B, N]` and `mask` `[B, F, T]` in [0, 1]
  where returned.
- metric: per parameter `[B]` finite values and a `[B]` chance level (or none) on the clips it scores
  (truth-carrying clips for truth metrics); the same values for the same generator seed unless declared
  `stochastic`.
- dataset: what it provides (waveform, truth kinds) among its declared `capabilities`; unique ids, labels
  0 / 1 / None, no anomalous training clip, waveforms `[N]` at the grid's rate or features on the grid,
  bool time-frequency masks on the grid, events inside the clip.

A pair whose explainer needs what the detector or data lacks is skipped with the reason. Plugins
may declare `test_params={...}` in their registration: small settings used only here.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .cells import inapplicable
from .dataset import ClipTable, Dataset, load_table
from .detector import Budget, Detector, batched_scores
from .errors import BenchmarkError
from .explainer import Explainer
from .features import FeatureSpec, power_mel, preset
from .needs import DATASET_NEEDS, TRUTH_NEEDS, dataset_provides, metric_unmet
from .registry import KINDS, Plugin, registry
from .suite_types import PluginConfig
from .types import Batch, Clip, Event, Explanation
from .workspace import seed_everything

SPEC = preset("dcase").with_duration(0.5)  # 128 x 16: short keeps the checks of every plugin pair cheap
BUDGET = Budget(epochs=1, patience=1, batch_size=8, max_seconds=120.0)
N_GROUPS = 2
DATA_PROVIDES = DATASET_NEEDS  # the conformance clips carry everything


class ConformanceClips(Dataset):
    """Two machines (harmonic hum at 120 or 190 Hz over noise); anomalous test clips add a 2.5 kHz
    tone burst whose ideal binary mask is the time-frequency truth. Deterministic from `seed`."""

    truth = frozenset({"intervals", "tf_mask", "audio"})
    has_waveforms = True

    def __init__(self, n_train: int = 8, n_test: int = 4, seed: int = 0) -> None:
        self.spec = SPEC
        self.n_train, self.n_test, self.seed = n_train, n_test, seed

    def clips(self, split: str) -> Iterator[Clip]:
        n = self.n_train if split == "train" else self.n_test
        g = torch.Generator().manual_seed(self.seed * 1000 + (split == "test"))
        sr, n_samples = SPEC.sample_rate, SPEC.n_samples
        t = torch.arange(n_samples) / sr
        for i in range(n):
            group = i % N_GROUPS
            f0 = (120.0, 190.0)[group] * (1 + 0.02 * float(torch.randn((), generator=g)))
            phases = 2 * math.pi * torch.rand(5, generator=g)
            normal = sum(torch.sin(2 * math.pi * f0 * k * t + phases[k - 1]) / k for k in range(1, 6))
            normal = 0.1 * normal + 0.02 * torch.randn(n_samples, generator=g)
            label = int(split == "test" and i >= n // 2)
            anomaly, events, tf_mask = torch.zeros(n_samples), (), None
            if label:
                onset_s = 0.1 + 0.15 * float(torch.rand((), generator=g))
                offset_s = onset_s + 0.2
                on = (t >= onset_s) & (t < offset_s)
                anomaly = 0.1 * torch.sin(2 * math.pi * 2500.0 * t) * on
                events = (Event(onset_s, offset_s, 2300.0, 2700.0, "tone"),)
                tf_mask = power_mel(SPEC, anomaly[None])[0] > power_mel(SPEC, normal[None])[0]
            yield Clip(id=f"m{group}/{split}_{i:03d}", split=split, label=label, sample_rate=sr,
                       waveform=(normal + anomaly).float(), anomaly=anomaly.float(), tf_mask=tf_mask,
                       events=events, meta={"machine": f"m{group}", "section": "00", "domain": "source"})


@dataclass
class ConformanceData:
    spec: FeatureSpec
    train: ClipTable
    test: ClipTable
    groups: torch.Tensor

    @property
    def batch(self) -> Batch:
        """Three test clips (one normal, two anomalous): an odd count exercises uneven chunks."""
        return self.test.batch(list(range(1, len(self.test))))


def conformance_data(seed: int = 0) -> ConformanceData:
    clips = ConformanceClips(seed=seed)
    train = load_table(clips, "train")
    groups = torch.tensor([int(m["machine"][1:]) for m in train.meta])
    return ConformanceData(spec=SPEC, train=train, test=load_table(clips, "test"), groups=groups)


def check_params(plugin: Plugin) -> dict:
    """A plugin's small settings for these checks (`test_params=` in its registration), else {}."""
    return dict(plugin.spec.test_params)


def trained_detector(name: str, data: ConformanceData, device: torch.device | str = "cpu") -> Detector:
    """Build, train one epoch, calibrate and set the EER threshold, like the train cell does."""
    device = torch.device(device)
    plugin = registry("detector").get(name)
    seed_everything(0)
    det = registry("detector").make(name, **check_params(plugin))
    det.build(tuple(data.train.x.shape[-2:]), N_GROUPS)
    det.to(device)
    n_val = max(2, len(data.train) // 6)
    fit_x, val_x = data.train.x[n_val:], data.train.x[:n_val]
    det.remember_normals(fit_x.to(device))
    det.fit(fit_x, val_x, train_groups=data.groups[n_val:], val_groups=data.groups[:n_val], seed=0, budget=BUDGET)
    det.eval()
    det.calibrate(batched_scores(det, val_x, BUDGET.batch_size, device).to(device))
    det.set_eer_threshold(batched_scores(det, data.test.x, BUDGET.batch_size, device), data.test.labels)
    for p in det.parameters():
        p.grad = None
    return det


def detector_problems(name: str, det: Detector, data: ConformanceData) -> list[str]:
    """What a trained detector gets wrong about the protocol (empty when it conforms)."""
    device = det.tau.device
    x = data.batch.x.to(device)
    problems = []
    xg = x.clone().requires_grad_()
    with torch.enable_grad():
        s = det.score(xg)
        if tuple(s.shape) != (len(x),):
            return [f"score of a [{len(x)}, 1, F, T] batch has shape {tuple(s.shape)}, want ({len(x)},)"]
        if not torch.isfinite(s).all():
            problems.append("scores are not finite")
        (grad,) = torch.autograd.grad(s.sum(), xg, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
        problems.append("the score has no finite, non-zero gradient with respect to x")
    with torch.no_grad():
        ref = det.reference(x)
    if tuple(ref.shape) != tuple(x.shape) or not torch.isfinite(ref).all():
        problems.append(f"reference(x) has shape {tuple(ref.shape)} or non-finite values; want {tuple(x.shape)}")
    twin = registry("detector").make(name, **check_params(registry("detector").get(name)))
    twin.build(tuple(x.shape[-2:]), N_GROUPS)
    twin.load_state_dict(det.state_dict())
    twin.to(device).eval()
    with torch.no_grad():
        if not torch.allclose(twin.score(x), det.score(x), rtol=1e-5, atol=1e-6):
            problems.append("a state_dict round trip (build + load_state_dict) changes the scores")
    return problems


def _snapshot(det: Detector) -> tuple[dict[str, torch.Tensor], list[bool]]:
    return ({k: v.detach().clone() for k, v in det.state_dict().items()}, [m.training for m in det.modules()])


def _same(a: Explanation, b: Explanation) -> bool:
    pairs = [(a.attribution, b.attribution), (a.audio, b.audio), (a.mask, b.mask)]
    return all((u is None and v is None) or (u is not None and v is not None and torch.equal(u, v)) for u, v in pairs)


def explanation_problems(expl: object, batch: Batch) -> list[str]:
    """Shape, type, device and value problems of one explanation of `batch`."""
    if not isinstance(expl, Explanation):
        return [f"explain returned {type(expl).__name__}, want benchmark.types.Explanation"]
    b, _, n_mels, n_frames = batch.x.shape
    a = expl.attribution
    if not isinstance(a, torch.Tensor) or tuple(a.shape) != (b, n_mels, n_frames):
        return [f"attribution has shape {tuple(getattr(a, 'shape', ()))}, want {(b, n_mels, n_frames)}"]
    problems = []
    if not a.is_floating_point():
        problems.append(f"attribution has dtype {a.dtype}, want a floating type")
    elif not torch.isfinite(a).all():
        problems.append("attribution has non-finite values")
    if a.device != batch.x.device:
        problems.append(f"attribution is on {a.device}, the batch on {batch.x.device}")
    for field, value in (("forward_passes", expl.forward_passes), ("backward_passes", expl.backward_passes)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            problems.append(f"{field} = {value!r}, want a finite number >= 0")
    if expl.audio is not None and (expl.audio.dim() != 2 or len(expl.audio) != b):
        problems.append(f"audio has shape {tuple(expl.audio.shape)}, want ({b}, N)")
    if expl.mask is not None:
        m = expl.mask
        if tuple(m.shape) != (b, n_mels, n_frames) or not bool(((m >= 0) & (m <= 1)).all()):
            problems.append(f"mask must be [B, F, T] in [0, 1]; got shape {tuple(m.shape)}")
    return problems


def prepared_explainer(name: str, det: Detector, data: ConformanceData) -> Explainer:
    """Explainer `name` with its check settings, bound to the detector's device, trained where it learns."""
    explainer: Explainer = registry("explainer").make(name, **check_params(registry("explainer").get(name)))
    explainer.bind(data.spec, det.tau.device)
    if explainer.trains:
        explainer.fit(det, data.train, seed=0, budget=BUDGET)
    return explainer


def explainer_problems(name: str, det: Detector, data: ConformanceData) -> list[str]:
    """Run explainer `name` twice (same seed) on the trained detector; what breaks the protocol."""
    plugin = registry("explainer").get(name)
    device = det.tau.device
    explainer = prepared_explainer(name, det, data)
    for p in det.parameters():
        p.grad = None
    weights, modes = _snapshot(det)
    batch = data.batch.to(device)
    first = explainer.explain(det, batch, generator=torch.Generator().manual_seed(0))
    problems = explanation_problems(first, batch)
    if problems:
        return problems
    again = explainer.explain(det, batch, generator=torch.Generator().manual_seed(0))
    if not _same(first, again):
        problems.append("two runs with the same generator seed give different maps (draw randomness from "
                        "the `generator` argument only)")
    if plugin.spec.stochastic:
        other = explainer.explain(det, batch, generator=torch.Generator().manual_seed(1))
        if _same(first, other):
            problems.append("declared stochastic, but another generator seed gives the same map")
    left = [n for n, p in det.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    if left:
        problems.append(f"gradients left on detector parameters ({', '.join(left[:3])}...): take input gradients "
                        "with torch.autograd.grad or clear .grad")
    after, modes_after = _snapshot(det)
    changed = [k for k, v in weights.items() if not torch.equal(v, after[k])]
    if changed:
        problems.append(f"detector weights/buffers changed: {', '.join(changed[:3])}")
    if modes != modes_after:
        problems.append("detector train/eval mode changed")
    _restore(det, weights, modes)
    return problems


def _restore(det: Detector, weights: dict[str, torch.Tensor], modes: list[bool]) -> None:
    """Undo what a misbehaving explainer did, so the next pair sees the detector as trained."""
    det.load_state_dict(weights)
    for module, training in zip(det.modules(), modes, strict=True):
        module.training = training
    for p in det.parameters():
        p.grad = None


@dataclass
class Outcome:
    detector: str
    explainer: str | None
    status: str  # "ok" | "skip" | "FAIL"
    detail: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        what = self.detector if self.explainer is None else f"{self.detector} x {self.explainer}"
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.status:<4} {what} ({self.seconds:.1f} s){tail}"


def check_pair(detector: str, det: Detector, explainer: str, data: ConformanceData) -> Outcome:
    """One detector x explainer check: skipped with the reason, passed, or failed with the problems."""
    t0 = time.monotonic()
    reason = inapplicable(PluginConfig("explainer", explainer), PluginConfig("detector", detector), DATA_PROVIDES)
    if reason:
        return Outcome(detector, explainer, "skip", reason)
    try:
        problems = explainer_problems(explainer, det, data)
    except Exception as exc:  # a conformance report names every failure instead of stopping at the first
        problems = [f"raised {type(exc).__name__}: {exc}"]
    return Outcome(detector, explainer, "FAIL" if problems else "ok", "; ".join(problems), time.monotonic() - t0)


METRIC_DETECTOR = "dense_ae"  # the cheapest detector: metrics are checked on its maps
# explainers tried in order for a metric's explanation, the first one whose output meets the metric's needs
METRIC_EXPLAINERS = ("saliency", "error_map", "lmac", "encodec_latent")
DATASET_CLIPS = 6  # clips per split a dataset check reads


_EXPLANATIONS: dict[str, tuple[Detector, Explainer, Explanation]] = {}  # the last detector's, per explainer


def _explained(ex: str, det: Detector, data: ConformanceData, batch: Batch) -> tuple[Explainer, Explanation]:
    """Explainer `ex` (trained where it learns) and its map of the batch, computed once per detector."""
    cached = _EXPLANATIONS.get(ex)
    if cached is None or cached[0] is not det:
        explainer = prepared_explainer(ex, det, data)
        cached = _EXPLANATIONS[ex] = (det, explainer,
                                      explainer.explain(det, batch, generator=torch.Generator().manual_seed(0)))
    return cached[1], cached[2]


def metric_problems(name: str, det: Detector, data: ConformanceData) -> tuple[str, list[str]]:
    """Metric `name` on an explanation of the conformance batch: (the explainer used, problems). A metric
    returns `[B]` finite values per parameter and a chance level `[B]` (or none) and gives the same values for
    the same generator seed (its family and direction are checked when it registers)."""
    from .metrics.context import MetricContext, MetricResult
    plugin = registry("metric").get(name)
    problems = []
    device = det.tau.device
    batch = data.batch.to(device)
    capabilities = registry("detector").get(METRIC_DETECTOR).capabilities
    reason = "no explainer"
    for ex in METRIC_EXPLAINERS:
        explainer, expl = _explained(ex, det, data, batch)
        reason = metric_unmet(plugin.needs, DATA_PROVIDES, expl, capabilities)
        if reason is None:
            break
    if reason is not None:
        return "-", [f"no conformance explainer meets its needs ({reason})"]

    rows = torch.nonzero(batch.has_truth.cpu()).flatten() if plugin.needs & TRUTH_NEEDS else torch.arange(len(batch))

    def compute() -> MetricResult:
        with torch.no_grad():
            scores = det.score(batch.x)
        ctx = MetricContext(batch=batch, explanation=expl, detector=det, spec=data.spec, scores=scores,
                            explain=lambda d, b: explainer.explain(d, b, generator=torch.Generator().manual_seed(0)),
                            generator=torch.Generator().manual_seed(0)).subset(rows)  # as the evaluate cell does
        ctx.generator = torch.Generator().manual_seed(0)
        seed_everything(0)
        return plugin.factory(ctx, **check_params(plugin))

    first = compute()
    if not isinstance(first, MetricResult) or not first.values:
        return ex, problems + [f"returned {type(first).__name__} without values; want a MetricResult"]
    b = len(rows)
    for param, v in first.values.items():
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != (b,):
            problems.append(f"[{param}] has shape {tuple(getattr(v, 'shape', ()))}, want ({b},)")
        elif not torch.isfinite(v).all():
            problems.append(f"[{param}] has non-finite values")
        chance = first.chance.get(param) if isinstance(first.chance, dict) else first.chance
        if chance is not None and tuple(chance.shape) != (b,):
            problems.append(f"[{param}] chance has shape {tuple(chance.shape)}, want ({b},) or None")
    again = compute()
    if not problems and not plugin.spec.stochastic and any(
            not torch.equal(v, again.values[k]) for k, v in first.values.items()):
        problems.append("two runs with the same generator seed differ (draw randomness from ctx.generator only)")
    return ex, problems


def reads_from_disk(name: str) -> bool:
    """True for a dataset whose constructor requires `data_root` (real data on disk)."""
    import inspect
    param = inspect.signature(registry("dataset").get(name).factory).parameters.get("data_root")
    return param is not None and param.default is inspect.Parameter.empty


def dataset_problems(name: str, data_root: str | None = None) -> tuple[str, list[str]]:
    """The first clips of each split of dataset `name` against the `Clip` contract: (counts, problems)."""
    plugin = registry("dataset").get(name)
    params = check_params(plugin) | ({"data_root": data_root} if data_root and reads_from_disk(name) else {})
    dataset: Dataset = registry("dataset").make(name, **params)
    spec = dataset.spec
    problems, seen, counts = [], set(), {}
    undeclared = sorted(dataset_provides(dataset) - plugin.capabilities)
    if undeclared:
        problems.append(f"provides {', '.join(undeclared)} but does not declare it: add it to capabilities= in "
                        "the registration")
    for split in ("train", "test"):
        clips = []
        for clip in dataset.clips(split):
            clips.append(clip)
            if len(clips) >= DATASET_CLIPS:
                break
        counts[split] = len(clips)
        if not clips:
            problems.append(f"split {split!r} yields no clips")
        for c in clips:
            where = f"{split} clip {c.id!r}"
            if c.id in seen:
                problems.append(f"{where}: id repeated")
            seen.add(c.id)
            if c.label not in (0, 1, None):
                problems.append(f"{where}: label {c.label!r}, want 0, 1 or None")
            if c.waveform is None and c.features is None:
                problems.append(f"{where}: neither waveform nor features")
            if c.waveform is not None and (c.waveform.dim() != 1 or c.sample_rate != spec.sample_rate):
                problems.append(f"{where}: waveform {tuple(c.waveform.shape)} at {c.sample_rate} Hz, want [N] at "
                                f"{spec.sample_rate} Hz")
            if c.features is not None and tuple(c.features.shape) != tuple(spec.grid):
                problems.append(f"{where}: features {tuple(c.features.shape)}, want {tuple(spec.grid)}")
            if c.tf_mask is not None and (tuple(c.tf_mask.shape) != tuple(spec.grid) or c.tf_mask.dtype != torch.bool):
                problems.append(f"{where}: tf_mask {tuple(c.tf_mask.shape)} {c.tf_mask.dtype}, want bool {spec.grid}")
            duration = spec.n_samples / spec.sample_rate
            for e in c.events:
                if not 0 <= e.onset_s < e.offset_s <= duration + 1e-6:
                    problems.append(f"{where}: event {e.onset_s:.3f}-{e.offset_s:.3f} s outside 0-{duration:.3f} s")
            if split == "train" and c.label == 1:
                problems.append(f"{where}: an anomalous training clip (detectors learn normal clips only)")
    return ", ".join(f"{k} {v}" for k, v in counts.items()), problems


def selection(kind: str | None, name: str | None) -> tuple[list[str], list[str]]:
    """The detectors and explainers `check KIND NAME` covers: a detector with every explainer, an
    explainer on every detector, all of a kind, everything (no kind), or a bare plugin name."""
    detectors, explainers = registry("detector").names(), registry("explainer").names()
    if kind is None:
        return detectors, explainers
    key = registry(kind).kind
    if name is not None:
        registry(key).get(name)  # unknown names fail with did-you-mean
    if key == "detector":
        return [name] if name else detectors, explainers
    return detectors, [name] if name else explainers


def _kind_of(name: str) -> str:
    import difflib
    for kind in KINDS:
        if name in registry(kind).names():
            return kind
    known = [*KINDS, *(n for k in KINDS for n in registry(k).names())]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise BenchmarkError(f"check: {name!r} is neither a plugin kind ({', '.join(KINDS)}) nor a registered plugin{hint}")


def check(kind: str | None = None, name: str | None = None, device: str = "cpu",
          detector: str | None = None, data_root: str | None = None) -> tuple[bool, str]:
    """Conformance of the selected plugins: `(all passed, report)`, one line per plugin and pair. `kind` is
    dataset, detector, explainer or metric (or a bare plugin name); `detector` narrows the detectors trained."""
    if kind is not None and kind not in set(KINDS) | {k + "s" for k in KINDS} and name is None:
        kind, name = _kind_of(kind), kind  # `check NAME`: the plugin's kind is looked up
    key = registry(kind).kind if kind is not None else None
    if detector is not None:
        registry("detector").get(detector)
    outcomes: list[Outcome] = []
    if key == "dataset":
        for d in [name] if name else registry("dataset").names():
            t0 = time.monotonic()
            if reads_from_disk(d) and not data_root:
                outcomes.append(Outcome(d, None, "skip", "reads data from disk: pass --data-root DIR"))
                continue
            try:
                counts, problems = dataset_problems(d, data_root)
            except Exception as exc:
                counts, problems = "", [f"raised {type(exc).__name__}: {exc}"]
            outcomes.append(Outcome(d, None, "FAIL" if problems else "ok", "; ".join(problems) or counts,
                                    time.monotonic() - t0))
        return _report(outcomes)
    data = conformance_data()
    if key == "metric":
        det_name = detector or METRIC_DETECTOR
        det = trained_detector(det_name, data, device)
        for m in [name] if name else registry("metric").names():
            t1 = time.monotonic()
            try:
                used, problems = metric_problems(m, det, data)
            except Exception as exc:
                used, problems = "-", [f"raised {type(exc).__name__}: {exc}"]
            outcomes.append(Outcome(m, None, "FAIL" if problems else "ok",
                                    "; ".join(problems) or f"on {det_name} x {used}", time.monotonic() - t1))
        return _report(outcomes)
    detectors, explainers = selection(key, name)
    if detector is not None:
        detectors = [detector]
    for d in detectors:
        t0 = time.monotonic()
        try:
            det = trained_detector(d, data, device)
            problems = detector_problems(d, det, data)
        except Exception as exc:  # report the detector as failed and skip its pairs
            det, problems = None, [f"raised {type(exc).__name__}: {exc}"]
        outcomes.append(Outcome(d, None, "FAIL" if problems else "ok", "; ".join(problems), time.monotonic() - t0))
        if det is None:
            continue
        outcomes.extend(check_pair(d, det, e, data) for e in explainers)
    return _report(outcomes)


def _report(outcomes: list[Outcome]) -> tuple[bool, str]:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "skip", "FAIL")}
    summary = f"{counts['ok']} passed, {counts['skip']} skipped, {counts['FAIL']} failed"
    return counts["FAIL"] == 0, "\n".join([o.line() for o in outcomes] + [summary])
