"""Dataset variants: one dataset with its waveforms low- or high-pass filtered before the features (the
frequency study's filter sweep), or with a log-power STFT grid instead of the log-mel one (its STFT-vs-mel
comparison). A variant is an ordinary dataset config with a `variant` (hashed into every key of its
cells) and a label (`synthetic-machines.lowpass-400hz`, `synthetic-machines.stft`) that tables show.

A suite declares them in two ways::

    [filter_sweep]                       # train-only cells: detectors re-trained and re-scored per cutoff
    datasets = ["synthetic-machines"]    # default: every dataset of the suite
    detectors = ["ae", "ast_knn"]        # default: every detector of the suite
    filters = ["lowpass", "highpass"]    # default: both
    cutoffs_hz = [400, 2000, 4000]       # or cutoff_min_hz / cutoff_max_hz / cutoff_step_hz (400 … 7600 by 400)

    difficulty_sweep = { datasets = ["synthetic-planer"], difficulties = [0, 0.25, 0.5, 0.75, 1] }
                                         # train-only cells: the data generated again at each difficulty
                                         # (default: every dataset of the suite with a `difficulty`
                                         # parameter, every detector, 0 … 1 by 0.25)

    [[variants]]                         # one variant, explained like the dataset itself unless explain = false
    dataset = "synthetic-machines"
    features = "stft"                    # "mel" | "stft" (25 ms frames, 10 ms hop)
    detectors = ["ast_knn"]
    explain = false

A difficulty variant (`synthetic-planer.difficulty-0.5`) is not a transform of the dataset's clips but another
generation of them: `generation_config` moves its difficulty into the plugin's parameters, so the clips, their
cache and their ground truth are the generator's own at that difficulty (`difficulty_table` in
`benchmark/difficulty_sweep.py` reads the sweep back).

Filtering is a zero-phase Butterworth (`scipy.signal.sosfiltfilt`, order `FILTER_ORDER` each way) of the
clip and of its anomaly component (the filter is linear, so the filtered anomaly is the filtered clip minus
its filtered normal twin). The ground truth stays the unfiltered one: a filter that removes the anomaly's
band leaves a clip labelled anomalous that no detector can tell apart — the point of the sweep. For an STFT
variant of data that carries the anomaly waveform (the synthetic sets), the time-frequency mask is the ideal
binary mask `power(anomaly) > power(twin)` on the STFT grid, as the generator draws it on the mel grid.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import ClipTable, Dataset
from .errors import BenchmarkError
from .features import FeatureSpec, LogMel, power_mel

FILTERS = ("lowpass", "highpass")
FEATURES = ("mel", "stft")
FILTER_ORDER = 8
# the paper's grid, 400 Hz … 8 kHz by 400 Hz, less 8 kHz itself: the Nyquist frequency of 16-kHz audio, where the
# low-pass is the unfiltered data (the sweep table's `unfiltered_auc`) and the high-pass leaves nothing
SWEEP_DEFAULTS = {"cutoff_min_hz": 400, "cutoff_max_hz": 7600, "cutoff_step_hz": 400}
SWEEP_KEYS = {"datasets", "detectors", "filters", "cutoffs_hz", *SWEEP_DEFAULTS}
VARIANT_KEYS = {"dataset", "detectors", "explain", "filter", "cutoff_hz", "features"}
DIFFICULTY_KEYS = {"datasets", "detectors", "difficulties"}
DIFFICULTIES = (0.0, 0.25, 0.5, 0.75, 1.0)
# variant keys that change how a dataset generates its clips (moved into its parameters), not the clips it made
GENERATION_KEYS = ("difficulty",)
LABEL = re.compile(r"^(?P<base>.+?)(?P<stft>\.stft)?(?:\.(?P<filter>lowpass|highpass)-(?P<cutoff>\d+(?:\.\d+)?)hz)?"
                   r"(?:\.difficulty-(?P<difficulty>\d+(?:\.\d+)?))?$")


def _hz(value: float) -> str:
    return f"{value:g}"


def variant_suffix(variant: dict[str, Any]) -> str:
    """The label part of a variant: `stft`, `lowpass-400hz`, `stft.highpass-2000hz`."""
    parts = []
    if variant.get("features", "mel") != "mel":
        parts.append(str(variant["features"]))
    if variant.get("filter"):
        parts.append(f"{variant['filter']}-{_hz(float(variant['cutoff_hz']))}hz")
    if "difficulty" in variant:
        parts.append(f"difficulty-{float(variant['difficulty']):g}")
    return ".".join(parts)


def parse_label(label: str) -> dict[str, Any]:
    """A dataset label's base name, features ("mel" | "stft"), filter (or "") and cutoff (Hz, or NaN)."""
    m = LABEL.match(label)
    assert m is not None  # the pattern matches every string
    return {"base": m["base"], "features": "stft" if m["stft"] else "mel", "filter": m["filter"] or "",
            "cutoff_hz": float(m["cutoff"]) if m["cutoff"] else float("nan"),
            "difficulty": float(m["difficulty"]) if m["difficulty"] else float("nan")}


def generation_config(config: Any) -> Any:
    """The config whose plugin generates a variant's clips: its generation keys (a difficulty sweep's
    `difficulty`) moved into the parameters, the transforms (filter, features) left as the variant. The
    config itself when it has no generation keys."""
    variant = dict(config.variant)
    moved = {k: variant.pop(k) for k in GENERATION_KEYS if k in variant}
    if not moved:
        return config
    return replace(config, params={**config.params, **moved}, variant=tuple(sorted(variant.items())))


def _difficulty_sweep(sweep: Any, datasets: list, detector_names: list[str], path: Path) -> list:
    where = f"suite file '{path}' difficulty_sweep"
    if not isinstance(sweep, dict):
        raise BenchmarkError(f"{where} must be a table, e.g. difficulty_sweep = {{ difficulties = [0, 0.5, 1] }}")
    unknown = set(sweep) - DIFFICULTY_KEYS
    if unknown:
        raise BenchmarkError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(sorted(DIFFICULTY_KEYS))}")
    levels = sweep.get("difficulties", list(DIFFICULTIES))
    if not isinstance(levels, list) or not levels or not all(
            isinstance(d, (int, float)) and not isinstance(d, bool) and 0 <= d <= 1 for d in levels):
        raise BenchmarkError(f"{where}: difficulties must be a non-empty list of numbers in [0, 1] "
                             "(0 = obvious anomalies, 1 = chance)")
    tunable = [d.name for d in datasets if "difficulty" in _parameters(d)]
    names = _names(sweep.get("datasets"), [d.name for d in datasets], "dataset", where) \
        if "datasets" in sweep else tunable
    untunable = [n for n in names if n not in tunable]
    if untunable or not names:
        raise BenchmarkError(f"{where}: dataset(s) {', '.join(untunable) or '(none)'} have no difficulty "
                             f"parameter; sweep one of: {', '.join(tunable) or 'none in this suite'}")
    dets = tuple(_names(sweep.get("detectors"), detector_names, "detector", where))
    by_name = {d.name: d for d in datasets}
    return [replace(by_name[name], variant=(("difficulty", float(level)),), only_detectors=dets, train_only=True)
            for name in names for level in sorted({float(v) for v in levels})]


def _parameters(config: Any) -> set[str]:
    import inspect
    return set(inspect.signature(config.plugin.factory).parameters)


def _variant(entry: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    features = entry.get("features", "mel")
    if features not in FEATURES:
        raise BenchmarkError(f"{where}: features must be one of {', '.join(FEATURES)}, got {features!r}")
    if features != "mel":
        out["features"] = features
    if "filter" in entry or "cutoff_hz" in entry:
        kind, cutoff = entry.get("filter"), entry.get("cutoff_hz")
        if kind not in FILTERS:
            raise BenchmarkError(f"{where}: filter must be one of {', '.join(FILTERS)}, got {kind!r}")
        if not isinstance(cutoff, (int, float)) or isinstance(cutoff, bool) or cutoff <= 0:
            raise BenchmarkError(f"{where}: cutoff_hz must be a positive number of Hz, got {cutoff!r}")
        out["filter"], out["cutoff_hz"] = kind, float(cutoff)
    if not out:
        raise BenchmarkError(f"{where}: a variant needs features = \"stft\" or a filter and cutoff_hz")
    return out


def _names(value: Any, have: list[str], what: str, where: str) -> list[str]:
    if value is None:
        return list(have)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BenchmarkError(f"{where}: {what}s must be a non-empty list of {what} names")
    missing = [v for v in value if v not in have]
    if missing:
        raise BenchmarkError(f"{where}: {what}(s) {', '.join(missing)} not in the suite (it has: {', '.join(have)})")
    return value


def sweep_cutoffs(table: dict[str, Any], where: str) -> list[float]:
    """The cutoffs of a `[filter_sweep]`: its `cutoffs_hz` list, or min … max by step."""
    if "cutoffs_hz" in table:
        cutoffs = table["cutoffs_hz"]
        if not isinstance(cutoffs, list) or not cutoffs or not all(
                isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in cutoffs):
            raise BenchmarkError(f"{where}: cutoffs_hz must be a non-empty list of positive numbers of Hz")
        return sorted({float(c) for c in cutoffs})
    lo, hi, step = (table.get(k, v) for k, v in SWEEP_DEFAULTS.items())
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (lo, hi, step)) or hi < lo:
        raise BenchmarkError(f"{where}: cutoff_min_hz <= cutoff_max_hz and cutoff_step_hz must be positive numbers")
    return [float(c) for c in np.arange(lo, hi + step / 2, step)]


def suite_variants(sweep: Any, variants: Any, datasets: list, detectors: list, path: Path,
                   difficulty_sweep: Any = None) -> list:
    """The dataset configs of a suite's `[filter_sweep]`, `[[variants]]` and `difficulty_sweep` (module doc)."""
    out = []
    names = [d.name for d in datasets]
    detector_names = [d.name for d in detectors]
    by_name = {d.name: d for d in datasets}
    if difficulty_sweep is not None:
        out += _difficulty_sweep(difficulty_sweep, datasets, detector_names, path)
    if sweep is not None:
        where = f"suite file '{path}' [filter_sweep]"
        if not isinstance(sweep, dict):
            raise BenchmarkError(f"{where} must be a table")
        unknown = set(sweep) - SWEEP_KEYS
        if unknown:
            raise BenchmarkError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                                 f"allowed: {', '.join(sorted(SWEEP_KEYS))}")
        filters = sweep.get("filters", list(FILTERS))
        if not isinstance(filters, list) or not filters or any(f not in FILTERS for f in filters):
            raise BenchmarkError(f"{where}: filters must be a non-empty list of {', '.join(FILTERS)}")
        cutoffs = sweep_cutoffs(sweep, where)
        dets = tuple(_names(sweep.get("detectors"), detector_names, "detector", where))
        for name in _names(sweep.get("datasets"), names, "dataset", where):
            for kind in dict.fromkeys(filters):
                for cutoff in cutoffs:
                    variant = {"filter": kind, "cutoff_hz": cutoff}
                    out.append(replace(by_name[name], variant=tuple(sorted(variant.items())), only_detectors=dets,
                                       train_only=True))
    if variants is not None:
        if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
            raise BenchmarkError(f"suite file '{path}': variants must be an array of tables ([[variants]])")
        for i, entry in enumerate(variants):
            where = f"suite file '{path}' [[variants]] #{i + 1}"
            unknown = set(entry) - VARIANT_KEYS
            if unknown:
                raise BenchmarkError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                                     f"allowed: {', '.join(sorted(VARIANT_KEYS))}")
            name = entry.get("dataset")
            if name not in by_name:
                raise BenchmarkError(f"{where}: dataset must name one of the suite's datasets ({', '.join(names)})")
            explain = entry.get("explain", True)
            if not isinstance(explain, bool):
                raise BenchmarkError(f"{where}: explain must be true or false")
            dets = entry.get("detectors")
            only = None if dets is None else tuple(_names(dets, detector_names, "detector", where))
            variant = _variant(entry, where)
            out.append(replace(by_name[name], variant=tuple(sorted(variant.items())), only_detectors=only,
                               train_only=not explain))
    labels = [c.label for c in out]
    repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
    if repeated:
        raise BenchmarkError(f"suite file '{path}': variant(s) {', '.join(repeated)} declared twice")
    return out


def variant_spec(spec: FeatureSpec, variant: dict[str, Any]) -> FeatureSpec:
    if variant.get("features", "mel") == "stft":
        from .features import stft_spec
        return stft_spec(spec)
    return spec


class VariantDataset(Dataset):
    """A dataset seen through a variant: same clips and truth, filtered waveforms and/or another grid."""

    def __init__(self, base: Dataset, variant: dict[str, Any], label: str):
        self.base, self.variant, self.label = base, dict(variant), label
        if not base.has_waveforms:
            raise BenchmarkError(f"dataset variant {label}: the dataset has features only, no waveforms to "
                                 "filter or to take an STFT of; drop the variant")
        self.spec = variant_spec(base.spec, self.variant)
        self.truth, self.has_waveforms = base.truth, True
        self.generated = bool(getattr(base, "generated", False))
        self._sos = None
        if self.variant.get("filter"):
            from scipy.signal import butter
            cutoff, nyquist = float(self.variant["cutoff_hz"]), base.spec.sample_rate / 2
            if not 0 < cutoff < nyquist:
                raise BenchmarkError(f"dataset variant {label}: cutoff {cutoff:g} Hz is not below the Nyquist "
                                     f"frequency {nyquist:g} Hz of {base.spec.sample_rate} Hz audio; lower it")
            self._sos = butter(FILTER_ORDER, cutoff, btype=self.variant["filter"], fs=base.spec.sample_rate,
                               output="sos")

    def filtered(self, w: torch.Tensor) -> torch.Tensor:
        """Waveforms `[..., N]` through the variant's filter (unchanged without one)."""
        if self._sos is None:
            return w
        from scipy.signal import sosfiltfilt
        out = sosfiltfilt(self._sos, w.double().cpu().numpy(), axis=-1)
        return torch.from_numpy(np.ascontiguousarray(out)).to(w.dtype)

    def clips(self, split: str) -> Iterator:
        for clip in self.base.clips(split):
            if clip.waveform is None:
                raise BenchmarkError(f"dataset variant {self.label}: clip {clip.id} has no waveform")
            anomaly = None if clip.anomaly is None else self.filtered(clip.anomaly)
            mask = clip.tf_mask if self.spec == self.base.spec else None
            if mask is None and clip.anomaly is not None and self.spec != self.base.spec:
                mask = ideal_binary_mask(self.spec, clip.waveform[None], clip.anomaly[None])[0]
            yield replace(clip, waveform=self.filtered(clip.waveform), features=None, anomaly=anomaly, tf_mask=mask)

    def counts(self) -> dict[str, int] | None:
        return self.base.counts()

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "spec": self.spec.to_dict(), "variant": self.variant}

    def table(self, base: ClipTable) -> ClipTable:
        """The variant of a stacked split of the base dataset (what `clips` gives, without rendering again)."""
        if base.waveform is None:
            raise BenchmarkError(f"dataset variant {self.label}: the split has no waveforms")
        waveform = self.filtered(base.waveform)
        anomaly = None if base.anomaly is None else self.filtered(base.anomaly)
        logmel = LogMel(self.spec)
        with torch.no_grad():
            x = torch.cat([logmel(waveform[i:i + 64]) for i in range(0, len(waveform), 64)]) if len(waveform) \
                else torch.zeros(0, 1, *self.spec.grid)
        tf_mask = base.tf_mask
        if self.spec != self.base.spec and base.tf_mask is not None:
            if base.anomaly is not None:
                tf_mask = ideal_binary_mask(self.spec, base.waveform, base.anomaly) & base.has_truth[:, None, None]
            else:  # no anomaly audio: the truth's frames over every bin of the new grid
                tf_mask = base.frame_labels[:, None, :].expand(-1, self.spec.grid[0], -1).clone()
        return replace(base, x=x, waveform=waveform, anomaly=anomaly, tf_mask=tf_mask)

    def __getattr__(self, name: str) -> Any:  # anything else the base dataset offers (layout, root, …)
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


def ideal_binary_mask(spec: FeatureSpec, waveform: torch.Tensor, anomaly: torch.Tensor) -> torch.Tensor:
    """`[B, F, T]` bool: the bins where the anomaly's power exceeds its normal twin's (waveform − anomaly)."""
    out = []
    for i in range(0, len(waveform), 64):
        w, a = waveform[i:i + 64], anomaly[i:i + 64]
        power = power_mel(spec, torch.cat([a, w - a]))
        out.append(power[: len(a)] > power[len(a):])
    return torch.cat(out) if out else torch.zeros(0, *spec.grid, dtype=torch.bool)


def with_variant(dataset: Dataset, config: Any) -> Dataset:
    """The dataset a config names: the plugin's own, or seen through the config's variant (`dataset` made from
    `generation_config(config)`'s parameters)."""
    config = generation_config(config)
    if not config.variant:
        return dataset
    return VariantDataset(dataset, dict(config.variant), config.label)
