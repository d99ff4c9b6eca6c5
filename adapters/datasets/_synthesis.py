"""The synthetic-data engine shared by `synthetic-machines` and `synthetic-planer`: recipes, per-clip seeds,
and the render pipeline that produces a clip, its counterfactual normal twin and the exact ground truth.

Every clip is rendered from its own generator, keyed by (seed, machine, section, split, domain, label,
index) through `np.random.SeedSequence`, so a clip never depends on which other clips were rendered or in
what order. An anomalous clip is `twin + delta` (same seed, the anomaly's change added), both quantised
to 16-bit PCM as written to disk; its anomaly waveform is their exact difference and its mask is the
ideal binary mask `power_mel(anomaly) > power_mel(twin)` on the dataset's grid.
"""
from __future__ import annotations

import json
import math
import tomllib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.dataset import SPLITS, Dataset
from benchmark.errors import BenchmarkError, DataError
from benchmark.features import FeatureSpec, power_mel, preset
from benchmark.types import Clip, Event

from ._audio_io import PCM_SCALE
from ._sound_models import FAMILIES, GEOMETRIC_STRENGTH, AnomalyContext, MachineSound, rms

RECIPES_DIR = Path(__file__).resolve().parents[2] / "tasks" / "datasets"
SIZES = ("tiny", "smoke", "quick", "full")
LABEL_NAMES = ("normal", "anomaly")
_MASK_BOOSTS = 6  # times an additive anomaly that dominates no bin may be raised
_REDRAWS = 4  # times a changed machine component that dominates no bin is drawn again


def load_recipe(name: str, path: str | None) -> tuple[Path, dict[str, Any]]:
    """The recipe TOML of a synthetic dataset: `path`, else `tasks/datasets/<name>.toml` of this checkout."""
    file = Path(path) if path else RECIPES_DIR / f"{name}.toml"
    if not file.is_file():
        raise DataError(f"recipe {file} not found: pass recipe=PATH or restore tasks/datasets/{name}.toml")
    try:
        return file, tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: not a valid TOML recipe ({' '.join(str(exc).split())})") from None


def recipe_value(recipe: dict[str, Any], file: Path, *keys: str) -> Any:
    """recipe[k1][k2]...; a missing key names the recipe and the key."""
    node: Any = recipe
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise DataError(f"{file}: missing [{'.'.join(keys[:i + 1])}]; see tasks/datasets/ for a complete recipe")
        node = node[key]
    return node


def clip_rng(seed: int, *key: str | int) -> np.random.Generator:
    """An independent generator for one thing (a section, a clip, a clip's anomaly), keyed by names and
    numbers; strings are hashed with CRC-32 (stable across processes, unlike `hash`)."""
    words = tuple(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key)
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=words))


def draw_parameters(ranges: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """One setting from `name = [lo, hi]` ranges (integers when both ends are integers); scalars are fixed."""
    out: dict[str, float] = {}
    for name in sorted(ranges):
        value = ranges[name]
        if isinstance(value, list) and len(value) == 2:
            lo, hi = value
            out[name] = int(rng.integers(lo, hi + 1)) if isinstance(lo, int) and isinstance(hi, int) \
                else float(rng.uniform(lo, hi))
        else:
            out[name] = value
    return out


def quantise(x: np.ndarray) -> np.ndarray:
    """float -> 16-bit PCM as soundfile reads it back (int / 2**15), clipping at full scale: `[N]` int16."""
    return np.clip(np.round(x * PCM_SCALE), -32768, 32767).astype(np.int16)


def strength(family: str, span: list[float], difficulty: float) -> float:
    """A family's strength at a difficulty in [0, 1]: dB levels move linearly, ratios geometrically."""
    easy, hard = float(span[0]), float(span[1])
    if family in GEOMETRIC_STRENGTH:
        return math.exp(math.log(easy) + difficulty * (math.log(hard) - math.log(easy)))
    return easy + difficulty * (hard - easy)


@dataclass(frozen=True)
class ClipPlan:
    """What one clip is before it is rendered: its id, split, label and where it comes from."""

    id: str
    split: str
    label: int
    machine: str
    section: int
    domain: str
    index: int
    attributes: dict[str, str] = field(default_factory=dict, hash=False)
    group: str | None = None
    kind: str | None = None

    @property
    def stem(self) -> str:
        return self.id.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class EventRecord:
    """An event as the events table lists it: the event, the families that made it, the realised
    anomaly-to-machine ratio over the event (dB, energy of the anomaly over energy of the twin)."""

    event: Event
    family: str
    amr_db: float


@dataclass
class RenderedClip:
    plan: ClipPlan
    clip: Clip
    pcm: np.ndarray  # [N] int16, exactly what is written to disk
    records: tuple[EventRecord, ...] = ()
    difficulty: float | None = None  # what an anomalous clip was rendered at (before the per-family jitter)


class SyntheticDataset(Dataset):
    """A recipe-driven synthetic dataset; subclasses plan the clips and render the machine sound.

    `difficulty` in [0, 1] (0 = obvious anomalies, 1 = about chance); None takes the recipe's `difficulty`.
    """

    recipe_name: ClassVar[str]
    layouts: ClassVar[tuple[str, ...]]
    truth = frozenset({"intervals", "tf_mask", "audio"})
    has_waveforms = True
    generated = True  # rendered from the recipe: its stacked splits are cached under --out (benchmark.data_cache)

    @classmethod
    def content_inputs(cls, params: dict[str, Any]) -> bytes:
        """The recipe's values as canonical JSON: cells are keyed by the recipe their clips were drawn from
        (`PluginConfig.identity`), not by its comments or layout."""
        _, recipe = load_recipe(cls.recipe_name, params.get("recipe"))
        return json.dumps(recipe, sort_keys=True, separators=(",", ":"), default=str).encode()

    def __init__(self, seed: int = 0, size: str = "quick", difficulty: float | None = None,
                 recipe: str | None = None, **overrides: Any):
        self.recipe_file, self.recipe = load_recipe(self.recipe_name, recipe)
        sizes = recipe_value(self.recipe, self.recipe_file, "sizes")
        if size not in sizes:
            raise BenchmarkError(f"{self.recipe_name} has no size {size!r}; sizes: {', '.join(sorted(sizes))}")
        unknown = sorted(set(overrides) - set(sizes[size]))
        if unknown:
            raise BenchmarkError(f"{self.recipe_name} has no parameter {', '.join(map(repr, unknown))}; it takes "
                                 f"seed, size, difficulty, recipe and the size fields {', '.join(sorted(sizes[size]))}")
        self.seed, self.size_name = int(seed), size
        self.size = {**sizes[size], **overrides}
        default = float(recipe_value(self.recipe, self.recipe_file, "difficulty"))
        self.difficulty = default if difficulty is None else float(difficulty)
        if not 0.0 <= self.difficulty <= 1.0:
            raise BenchmarkError(f"difficulty must be in [0, 1] (0 = obvious anomalies, 1 = chance); "
                                 f"got {self.difficulty}")
        base = preset(recipe_value(self.recipe, self.recipe_file, "preset"))
        self.spec: FeatureSpec = base.with_duration(float(self.size["duration_s"]))
        self._anomalies = recipe_value(self.recipe, self.recipe_file, "anomalies")
        for family in recipe_value(self.recipe, self.recipe_file, "anomalies", "strength"):
            if family not in FAMILIES:
                raise DataError(f"{self.recipe_file}: unknown anomaly family {family!r}; "
                                f"families: {', '.join(FAMILIES)}")
        self.plans: list[ClipPlan] = self._plan()

    def counts(self) -> dict[str, int]:
        """Clips per split from the plan, without rendering any (the suite's cost estimate)."""
        test = [p for p in self.plans if p.split == "test"]
        return {"train": sum(p.split == "train" for p in self.plans), "test": len(test),
                "test_anomalous": sum(p.label == 1 for p in test)}

    # ----------------------------------------------------------------------------------- subclass hooks
    def _plan(self) -> list[ClipPlan]:
        raise NotImplementedError

    def _machine(self, plan: ClipPlan, rng: np.random.Generator) -> MachineSound:
        """The machine sound of one clip (before background), drawn from `rng`."""
        raise NotImplementedError

    def _background(self, plan: ClipPlan, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """(unit-RMS background `[N]`, signal-to-background ratio in dB) of one clip."""
        raise NotImplementedError

    def _event_families(self, plan: ClipPlan, rng: np.random.Generator) -> list[str]:
        """The anomaly families rendered together in one event of this clip."""
        raise NotImplementedError

    def _annotate(self, plan: ClipPlan, onset_s: float, offset_s: float, f_lo_hz: float, f_hi_hz: float,
                  families: list[str]) -> Event:
        """The event as the dataset states it (the planer rounds to whole seconds and drops the band)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- streaming
    def clips(self, split: str) -> Iterator[Clip]:
        for rendered in self.rendered(split):
            yield rendered.clip

    def rendered(self, split: str) -> Iterator[RenderedClip]:
        self.check_split(split)
        for plan in self.plans:
            if plan.split == split:
                yield self.render(plan)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed, "size": self.size_name, "difficulty": self.difficulty,
                "clips": {s: sum(p.split == s for p in self.plans) for s in SPLITS}}

    # ----------------------------------------------------------------------------------- rendering
    def render(self, plan: ClipPlan) -> RenderedClip:
        """One clip with its truth. Normal clips get an all-False mask and a zero anomaly waveform."""
        key = (plan.machine, plan.section, plan.split, plan.domain, plan.label, plan.index)
        rng = clip_rng(self.seed, "clip", *key)
        sound = self._machine(plan, rng)
        machine = sound.mix
        noise, snr_db = self._background(plan, rng)
        # float64 throughout, so that twin + 0 and twin quantise identically outside the anomaly
        twin = (machine + noise * rms(machine) * 10.0 ** (-(snr_db + rng.uniform(-1.5, 1.5)) / 20.0)).astype(np.float64)
        jitter = float(self.recipe.get("level_jitter_db", 0.0))
        gain = 10.0 ** ((float(self.recipe["level_dbfs"]) + rng.uniform(-jitter, jitter)) / 20.0) / rms(twin)
        twin_pcm = quantise(gain * twin)
        grid = (self.spec.n_bins, self.spec.frames_for(self.spec.n_samples))
        meta = {"machine": plan.machine, "section": f"{plan.section:02d}", "domain": plan.domain,
                "attributes": dict(plan.attributes)}
        if plan.label == 0:
            clip = Clip(plan.id, plan.split, 0, self.spec.sample_rate, waveform=_to_float(twin_pcm), meta=meta,
                        tf_mask=torch.zeros(grid, dtype=torch.bool),
                        anomaly=torch.zeros(twin_pcm.size, dtype=torch.float32))
            return RenderedClip(plan, clip, twin_pcm)
        context = AnomalyContext(sound, twin, self.spec.sample_rate)
        difficulty = self._clip_difficulty(key)
        for attempt in range(_REDRAWS + 1):
            # a change of the machine's own sound that dominates no bin has no truth: draw another anomaly
            # (the last draw, like every additive one, is raised until it dominates a bin instead)
            rng_anomaly = clip_rng(self.seed, "anomaly", *key) if attempt == 0 else \
                clip_rng(self.seed, "anomaly-redraw", attempt, *key)
            delta, events, additive = self._anomaly(plan, context, rng_anomaly, difficulty)
            boosts = _MASK_BOOSTS if additive or attempt == _REDRAWS else 0
            truth = self._truth(gain, twin, twin_pcm, delta, boosts)
            if truth is not None:
                break
        else:
            raise DataError(f"{self.recipe_name}: the anomaly of {plan.id} dominates no time-frequency bin even "
                            f"when boosted; lower the difficulty ({self.difficulty}) or widen the recipe's strengths")
        pcm, anomaly, mask = truth
        records = tuple(sorted((EventRecord(ev, family, self._amr_db(anomaly, twin_pcm, lo, hi))
                                for ev, family, lo, hi in events), key=lambda r: (r.event.onset_s, r.event.offset_s)))
        clip = Clip(plan.id, plan.split, 1, self.spec.sample_rate, waveform=_to_float(pcm), meta=meta,
                    events=tuple(r.event for r in records), tf_mask=mask, anomaly=torch.from_numpy(anomaly))
        return RenderedClip(plan, clip, pcm, records, difficulty)

    def _clip_difficulty(self, key: tuple) -> float:
        """The difficulty this anomalous clip is rendered at: the recipe's `difficulty`, or for the subtle
        anomalies the recipe mixes in (`anomalies.subtle_share` of the clips, drawn independently per clip)
        `max(difficulty, subtle_difficulty)`."""
        share = float(self._anomalies.get("subtle_share", 0.0))
        if share <= 0.0:
            return self.difficulty
        subtle = clip_rng(self.seed, "subtle", *key).random() < share
        return max(self.difficulty, float(self._anomalies["subtle_difficulty"])) if subtle else self.difficulty

    def _anomaly(self, plan: ClipPlan, context: AnomalyContext, rng: np.random.Generator, difficulty: float
                 ) -> tuple[np.ndarray, list[tuple[Event, str, int, int]], bool]:
        """The summed change `[N]` of every event at `difficulty` (each family jittered by the recipe's
        `difficulty_jitter`); per event (event, its families joined by "+", first and end sample of the rendered
        interval); whether every part is an added sound (see AnomalyRender)."""
        sr = self.spec.sample_rate
        delta = np.zeros(context.n)
        events = []
        additive = True
        spans = recipe_value(self.recipe, self.recipe_file, "anomalies", "strength")
        jitter = float(self._anomalies.get("difficulty_jitter", 0.0))
        for onset, offset in self._event_times(rng):
            families = self._event_families(plan, rng)
            bands = []
            for family in families:
                clip_difficulty = float(np.clip(difficulty + rng.uniform(-jitter, jitter), 0.0, 1.0))
                level = strength(family, spans[family], clip_difficulty)
                part = FAMILIES[family](context, rng, level, onset, offset)
                delta += part.delta
                additive &= part.additive
                bands.append((part.f_lo_hz, part.f_hi_hz))
            f_lo, f_hi = min(b[0] for b in bands), max(b[1] for b in bands)
            event = self._annotate(plan, onset, offset, f_lo, f_hi, families)
            events.append((event, "+".join(families), int(onset * sr), int(math.ceil(offset * sr))))
        return delta, events, additive

    def _event_times(self, rng: np.random.Generator) -> list[tuple[float, float]]:
        """Non-overlapping event intervals (s, rounded to ms): log-normal durations (median ≈ 2 s, within
        the recipe's range and the clip), placed with random gaps."""
        clip_s = self.spec.duration_s
        a = self._anomalies
        lo_s, hi_s = (float(v) for v in a["duration_range_s"])
        min_gap = float(a["min_gap_s"])
        probs = np.asarray(a["events_per_clip"], dtype=float)
        count = int(rng.choice(np.arange(1, probs.size + 1), p=probs / probs.sum()))
        longest = min(hi_s, 0.9 * clip_s)
        durations = np.clip(float(a["duration_median_s"]) * np.exp(float(a["duration_sigma"])
                                                                   * rng.standard_normal(count)), lo_s, longest)
        while count > 1 and durations.sum() + (count - 1) * min_gap > clip_s:
            count -= 1
            durations = durations[:count]
        free = clip_s - durations.sum() - (count - 1) * min_gap
        gaps = rng.dirichlet(np.ones(count + 1)) * free
        onsets = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(durations[:-1] + min_gap)])
        out = []
        for onset, duration in zip(onsets, durations, strict=True):
            start = round(float(onset), 3)
            out.append((start, round(min(start + float(duration), clip_s), 3)))
        return out

    def _truth(self, gain: float, twin: np.ndarray, twin_pcm: np.ndarray, delta: np.ndarray, boosts: int
               ) -> tuple[np.ndarray, np.ndarray, torch.Tensor] | None:
        """(anomalous pcm `[N]` int16, anomaly `[N]` float32, tf_mask `[F, T]` bool), or None when the
        anomaly dominates no bin even after `boosts` raises to just past the bin closest to dominance."""
        twin_f = _to_float(twin_pcm)
        for boost in range(boosts + 1):
            pcm = quantise(gain * (twin + delta))
            anomaly = (pcm.astype(np.float32) - twin_pcm.astype(np.float32)) / PCM_SCALE
            power = power_mel(self.spec, torch.stack([torch.from_numpy(anomaly), twin_f]))
            mask = power[0] > power[1]
            if mask.any():
                return pcm, anomaly, mask
            if boost < boosts:
                ratio = float((power[1] / power[0].clamp_min(1e-30)).min())
                delta = delta * 1.5 * math.sqrt(max(ratio, 1.0))
        return None

    @staticmethod
    def _amr_db(anomaly: np.ndarray, twin_pcm: np.ndarray, lo: int, hi: int) -> float:
        twin = twin_pcm[lo:hi].astype(np.float64) / PCM_SCALE
        e_anomaly = float(np.sum(np.square(anomaly[lo:hi].astype(np.float64))))
        return round(10.0 * math.log10((e_anomaly + 1e-20) / (float(np.sum(np.square(twin))) + 1e-20)), 2)

    # ----------------------------------------------------------------------------------- writing
    def write(self, folder: Path, layout: str | None) -> dict[str, int]:
        """Write every clip and its truth under `folder` (which exists and is empty) in `layout`."""
        from ._layouts import WRITERS  # the writers render through this class: import them on use

        layout = layout or self.layouts[0]
        if layout not in self.layouts:
            raise DataError(f"{self.recipe_name} renders on the {self.spec.sample_rate} Hz "
                            f"{'/'.join(self.layouts)} grid and cannot be written in the {layout} layout; "
                            f"use --layout {self.layouts[0]}")
        return WRITERS[layout](self, folder)

    def provenance(self) -> dict[str, Any]:
        """What reproduces this dataset: generator, seed, size, difficulty and the recipe's content."""
        return {"generator": self.recipe_name, "seed": self.seed, "size": self.size_name,
                "difficulty": self.difficulty, "size_table": self.size, "recipe": self.recipe}


def _to_float(pcm: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pcm.astype(np.float32) / PCM_SCALE)
