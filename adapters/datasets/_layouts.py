"""Writing a synthetic dataset to disk in the layouts the real loaders read: DCASE task 2 (2022+ names,
`dev_data/<type>/{train,test}/*.wav`, attributes CSVs) and the public wood-planer release (`.pt` log-mel
tensors, annotation CSV). Both add `ground_truth/<clip id>.npz` for every test clip and `events.csv`.

Clips are rendered and written by a pool of processes (each clip has its own seed, so the files do not
depend on the pool); tables are assembled in plan order, so every byte is reproducible.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from benchmark.dataset import SPLITS
from benchmark.features import FeatureSpec, LogMel
from benchmark.progress import Counter

from ._audio_io import fmt, write_csv, write_features, write_truth, write_wav
from ._synthesis import ClipPlan, RenderedClip, SyntheticDataset

EVENTS_HEADER = ("clip", "onset_s", "offset_s", "f_lo_hz", "f_hi_hz", "kind", "family", "amr_db")
ANNOTATIONS_HEADER = ("file", "chunk", "kind", "onset_s", "offset_s")
_SERIAL_BELOW = 24  # clips; a pool costs more than it saves for fewer

# one job per clip: returns the rows it contributes to the tables
Job = Callable[[SyntheticDataset, Path, RenderedClip], dict[str, list[list[str]]]]


def _event_rows(rendered: RenderedClip) -> list[list[str]]:
    return [[rendered.clip.id, fmt(r.event.onset_s), fmt(r.event.offset_s), fmt(r.event.f_lo_hz, 1),
             fmt(r.event.f_hi_hz, 1), r.event.kind, r.family, fmt(r.amr_db, 2)] for r in rendered.records]


def _write_truth(folder: Path, rendered: RenderedClip) -> None:
    clip = rendered.clip
    path = folder / "ground_truth" / f"{clip.id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_truth(path, clip.tf_mask.numpy(), clip.events)


def _dcase_clip(ds: SyntheticDataset, folder: Path, rendered: RenderedClip) -> dict[str, list[list[str]]]:
    plan = rendered.plan
    path = folder / "dev_data" / plan.machine / plan.split / f"{plan.stem}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, rendered.pcm, ds.spec.sample_rate)
    if plan.split == "test":
        _write_truth(folder, rendered)
    pairs = [x for key in sorted(plan.attributes) for x in (key, plan.attributes[key])]
    return {"events": _event_rows(rendered),
            f"attributes:{plan.machine}:{plan.section:02d}": [[f"{plan.machine}/{plan.split}/{plan.stem}.wav", *pairs]]}


def _planer_clip(ds: SyntheticDataset, folder: Path, rendered: RenderedClip) -> dict[str, list[list[str]]]:
    clip = rendered.clip
    path = folder / f"{clip.id}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        write_features(path, _logmel(ds.spec)(clip.waveform[None])[0, 0])
    if clip.split == "test":
        _write_truth(folder, rendered)
    recording, chunk = rendered.plan.stem.rsplit("_", 1)
    annotations = [[recording, chunk, e.kind, fmt(e.onset_s), fmt(e.offset_s)] for e in clip.events]
    return {"events": _event_rows(rendered), "annotations": annotations}


@lru_cache(maxsize=4)
def _logmel(spec: FeatureSpec) -> LogMel:
    return LogMel(spec)


def write_dcase(ds: SyntheticDataset, folder: Path) -> dict[str, int]:
    tables = _write_all(ds, folder, _dcase_clip)
    for key in sorted(k for k in tables if k.startswith("attributes:")):
        _, machine, section = key.split(":")
        width = max(len(r) for r in tables[key]) - 1
        header = ["file_name"] + [f"d{i // 2 + 1}{'pv'[i % 2]}" for i in range(width)]
        write_csv(folder / "dev_data" / machine / f"attributes_{section}.csv", header, tables[key])
    return _summary(ds, tables)


def write_planer(ds: SyntheticDataset, folder: Path) -> dict[str, int]:
    tables = _write_all(ds, folder, _planer_clip)
    write_csv(folder / "annotations.csv", ANNOTATIONS_HEADER, tables.get("annotations", []))
    return _summary(ds, tables)


WRITERS: dict[str, Callable[[SyntheticDataset, Path], dict[str, int]]] = {"dcase": write_dcase, "planer": write_planer}


def _summary(ds: SyntheticDataset, tables: dict[str, list[list[str]]]) -> dict[str, int]:
    return {"clips": len(ds.plans), "train": sum(p.split == "train" for p in ds.plans),
            "test": sum(p.split == "test" for p in ds.plans), "anomalous": sum(p.label == 1 for p in ds.plans),
            "events": len(tables.get("events", []))}


def _write_all(ds: SyntheticDataset, folder: Path, job: Job) -> dict[str, list[list[str]]]:
    """Render and write every clip (train first, then test), then `events.csv` and `synthesis.json`."""
    global _TASK
    plans = [p for split in SPLITS for p in ds.plans if p.split == split]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(cores, 8) if "fork" in multiprocessing.get_all_start_methods() else 1
    _TASK = (ds, folder, job, plans)
    counter = Counter(f"writing {ds.recipe_name}", len(plans))
    try:
        if len(plans) < _SERIAL_BELOW or workers < 2:
            parts = []
            for i in range(len(plans)):
                parts.append(_run(i))
                counter.update()
        else:  # forked workers inherit _TASK, so nothing but clip indices and rows crosses processes
            with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
                parts = []
                for part in pool.imap(_run, range(len(plans)), chunksize=4):
                    parts.append(part)
                    counter.update()
    finally:
        counter.close()
        _TASK = None
    tables: dict[str, list[list[str]]] = defaultdict(list)
    for part in parts:
        for key, rows in part.items():
            tables[key].extend(rows)
    write_csv(folder / "events.csv", EVENTS_HEADER, tables.get("events", []))
    (folder / "synthesis.json").write_text(json.dumps(ds.provenance(), indent=1, sort_keys=True) + "\n")
    return tables


_TASK: tuple[SyntheticDataset, Path, Job, list[ClipPlan]] | None = None


def _worker_init() -> None:
    # one thread per worker process: the pool already uses the cores (and forked OpenMP pools must stay idle)
    torch.set_num_threads(1)


def _run(index: int) -> dict[str, list[list[str]]]:
    ds, folder, job, plans = _TASK
    return job(ds, folder, ds.render(plans[index]))
