"""`python -m benchmark data synth|check`: write a synthetic dataset to disk, or validate one on disk.

Both go through the registry: a dataset that can be written has a `write(folder, layout)` method (the
synthetic generators); a dataset read from disk takes a `data_root` parameter (the real loaders).
"""
from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from .dataset import SPLITS
from .errors import DataError
from .registry import registry


def synth(name: str, out: Path, *, seed: int, layout: str | None, **params) -> str:
    """Write dataset `name` (seed, size, difficulty, ... in `params`) under `out`, atomically: it is
    written into a temporary sibling folder that is renamed to `out` only when complete."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not empty: choose a new --out or remove it")
    if not callable(getattr(registry("dataset").get(name).factory, "write", None)):
        writable = [p.name for p in registry("dataset").plugins() if callable(getattr(p.factory, "write", None))]
        raise DataError(f"dataset {name!r} is read from disk and cannot be synthesised; "
                        f"synth writes {', '.join(writable)}")
    dataset = registry("dataset").make(name, seed=seed, **params)
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
    return (f"wrote {name} (seed {seed}, size {dataset.size_name}, difficulty {dataset.difficulty:g}) to {out} "
            f"in the {layout} layout in {seconds:.1f} s: {counts['clips']} clips ({counts['train']} train, "
            f"{counts['test']} test of which {counts['anomalous']} anomalous, {counts['events']} events), "
            f"ground truth in {out / 'ground_truth'} and {out / 'events.csv'}; read it back with "
            f"`python -m benchmark data check --dataset {'woodplaner' if layout == 'planer' else 'dcase'} "
            f"--data-root {out}`.")


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
