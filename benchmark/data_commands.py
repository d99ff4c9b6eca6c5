"""`python -m benchmark data synth|check`: write a synthetic dataset to disk (its files, and/or the stacked
splits a run loads from its results store), or validate one on disk.

Both go through the registry: a dataset that can be written has a `write(folder, layout)` method (the
synthetic generators); a dataset read from disk takes a `data_root` parameter (the real loaders).
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from .data_cache import cache_relpath, cached_table, resolved_params
from .dataset import SPLITS, Dataset
from .errors import DataError
from .registry import registry
from .store import Store
from .suite_types import PluginConfig


def synth(name: str, out: Path | None, *, seed: int, layout: str | None, store: Path | None = None,
          **params) -> str:
    """Write dataset `name` (seed, size, difficulty, ... in `params`): its files in `layout` under the folder
    `out`, and/or its stacked train and test splits into the results store `store` (`benchmark.data_cache`),
    the files a later `run --out store` loads instead of rendering when its suite gives the dataset the same
    parameters (one left at its default may be left out). Nothing is half-written: the folder is written into
    a temporary sibling renamed to `out` when complete, each split file to a temporary name renamed when
    complete. The summary is one paragraph per output."""
    if out is None and store is None:
        raise DataError("data synth writes the dataset's files (--out DIR) and/or the splits a run loads "
                        "(--store RUNS, the --out of the run): give at least one")
    if out is None and layout is not None:
        raise DataError(f"--layout {layout} is the folder layout of --out, and there is no --out: give --out DIR "
                        f"or leave --layout out")
    out = None if out is None else Path(out)
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not empty: choose a new --out or remove it")
    if not callable(getattr(registry("dataset").get(name).factory, "write", None)):
        writable = [p.name for p in registry("dataset").plugins() if callable(getattr(p.factory, "write", None))]
        raise DataError(f"dataset {name!r} is read from disk and cannot be synthesised; "
                        f"synth writes {', '.join(writable)}")
    config = PluginConfig("dataset", name, {"seed": seed, **params})
    dataset = registry("dataset").make(name, **config.params)
    summaries = []
    if out is not None:
        summaries.append(_write_folder(name, dataset, out, layout))
    if store is not None:
        summaries.append(_write_splits(config, dataset, Path(store)))
    return "\n".join(summaries)


def _write_folder(name: str, dataset: Dataset, out: Path, layout: str | None) -> str:
    """Write every clip and its truth under `out` (absent or empty) via a temporary sibling folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)
    started = time.perf_counter()
    try:
        counts = dataset.write(partial, layout)
        if out.exists():
            out.rmdir()
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    layout = layout or dataset.layouts[0]
    return (f"wrote {name} (seed {dataset.seed}, size {dataset.size_name}, difficulty {dataset.difficulty:g}) to "
            f"{out} in the {layout} layout in {seconds:.1f} s: {counts['clips']} clips ({counts['train']} train, "
            f"{counts['test']} test of which {counts['anomalous']} anomalous, {counts['events']} events), "
            f"ground truth in {out / 'ground_truth'} and {out / 'events.csv'}; read it back with "
            f"`python -m benchmark data check --dataset {'woodplaner' if layout == 'planer' else 'dcase'} "
            f"--data-root {out}`.")


def _write_splits(config: PluginConfig, dataset: Dataset, store: Path) -> str:
    """Stack both splits into `<store>/data/` under the keys a run computes for `config`; a split already
    there (from a run or an earlier synth) is read back, not rendered again."""
    try:
        (store / "data").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot use '{store}' as the results store: {exc.strerror or exc}; "
                        f"point --store at a writable folder") from None
    relpaths = {split: cache_relpath(config, split) for split in SPLITS}
    there = [split for split, relpath in relpaths.items() if (store / relpath).is_file()]
    started = time.perf_counter()
    clips = {split: len(cached_table(Store(store), config, dataset, split)) for split in SPLITS}
    seconds = time.perf_counter() - started
    done = "stacked"
    if there:
        done += f" (the {' and '.join(there)} split{'s were' if len(there) > 1 else ' was'} there already, from an " \
                f"earlier run or synth)"
    # the suite table that shares these files: every parameter the dataset resolved (None = unset, not TOML)
    table = ", ".join(f"{key} = {json.dumps(value)}" for key, value in sorted(resolved_params(config).items())
                      if value is not None)
    files = ", ".join(relpath.removeprefix("data/") for relpath in relpaths.values())
    return (f"{done} {config.name}'s {clips['train']} train and {clips['test']} test clips into {store / 'data'} "
            f"in {seconds:.1f} s ({files}): `python -m benchmark run --out {store}` loads them instead of "
            f"rendering when its suite has [datasets.{config.name}] {table} (a parameter at its default may be "
            f"left out; any other parameter, or another value, renders its own).")


def check(dataset: str, data_root: str) -> str:
    """Read every file of a dataset on disk (each is validated by its loader) and report what is there:
    clips per machine, section, domain, split and label, and the ground truth available."""
    plugin = registry("dataset").get(dataset)
    if "data_root" not in inspect.signature(plugin.factory).parameters:
        readers = [p.name for p in registry("dataset").plugins()
                   if "data_root" in inspect.signature(p.factory).parameters]
        raise DataError(f"dataset {dataset!r} is generated, not read from disk; check reads {', '.join(readers)} "
                        f"(write {dataset} with `data synth` first)")
    ds = registry("dataset").make(dataset, data_root=data_root)
    groups: Counter = Counter()
    with_events = with_mask = n_events = 0
    for split in SPLITS:
        for clip in ds.clips(split):
            m = clip.meta
            label = {0: "normal", 1: "anomaly", None: "unlabelled"}[clip.label]
            groups[(str(m.get("machine", "")), str(m.get("section", "")), str(m.get("domain", "")), split, label)] += 1
            with_events += bool(clip.events)
            n_events += len(clip.events)
            with_mask += clip.tf_mask is not None
    total = sum(groups.values())
    if total == 0:
        raise DataError(f"{data_root}: no clips found for {dataset}; point --data-root at the dataset's folder")
    spec = ds.spec
    lines = [
        f"{dataset} at {data_root}: {total} clips read and valid, grid {spec.n_bins}x{spec.n_frames} "
        f"({spec.sample_rate} Hz, {spec.duration_s:g} s clips), {'waveforms' if ds.has_waveforms else 'features only'}",
        f"ground truth: {', '.join(sorted(ds.truth)) or 'none'}; {with_events} clips with events ({n_events} events), "
        f"{with_mask} with a tf_mask",
    ]
    rows = sorted({k[:4] for k in groups}, key=lambda r: (*r[:3], SPLITS.index(r[3])))
    header = ("machine", "section", "domain", "split", "normal", "anomaly", "unlabelled")
    table = [header] + [(*r, *(str(groups[(*r, lab)]) for lab in ("normal", "anomaly", "unlabelled"))) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                     strict=True)))
              for row in table]
    return "\n".join(lines)
