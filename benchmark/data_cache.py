"""Generated datasets, stacked once: a split of a synthetic dataset is rendered by the first process that needs it
and stored under `<out>/data/<key>.pt`; every later process loads the tensors instead of rendering again.

The key hashes the dataset's identity (name, parameters, version, the import closure of its plugin and its
recipe's bytes), the split and the import closure of `dataset.py` (which stacks the clips). Only datasets
that declare `generated = True` are cached: a dataset read from disk could change under the same key.
Waveforms that are exact 16-bit PCM (the synthetic clips are) are stored as int16, losslessly.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .dataset import ClipTable, Dataset, load_table, notice
from .registry import closure_hash
from .store import DamagedFile, Store, checkpoint_bytes, read_checkpoint
from .suites import PluginConfig

PCM_SCALE = 32768.0
TENSORS = ("x", "labels", "waveform", "tf_mask", "frame_labels", "anomaly", "has_truth")


def cache_key(config: PluginConfig, split: str) -> str:
    blob = json.dumps({"dataset": config.identity(), "split": split,
                       "stacking": closure_hash(Path(__file__).resolve().parent / "dataset.py")},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached_table(store: Store, config: PluginConfig, dataset: Dataset, split: str) -> ClipTable:
    """The split's table: from the store when a process made it before, else stacked and stored."""
    if not getattr(dataset, "generated", False):
        return load_table(dataset, split)
    relpath = f"data/{config.name}-{split}-{cache_key(config, split)}.pt"
    path = store.root / relpath
    if path.is_file():
        try:
            return _unpack(read_checkpoint(path, "cpu"))
        except (DamagedFile, KeyError, TypeError, ValueError) as exc:
            notice(f"cached data '{path}' is unreadable ({exc}): generating it again")
    table = load_table(dataset, split)
    store.write(relpath, checkpoint_bytes(_pack(table)))
    return table


def _pack(table: ClipTable) -> dict:
    out: dict = {"ids": list(table.ids), "meta": list(table.meta), "pcm": []}
    for name in TENSORS:
        t = getattr(table, name)
        if t is not None and t.is_floating_point() and name in ("waveform", "anomaly") and _is_pcm(t):
            out[name] = torch.round(t * PCM_SCALE).to(torch.int16)
            out["pcm"].append(name)
        else:
            out[name] = t
    return out


def _is_pcm(t: torch.Tensor) -> bool:
    scaled = t * PCM_SCALE
    return bool(torch.equal(scaled, torch.round(scaled)) and scaled.abs().max() <= 32767) if t.numel() else False


def _unpack(data: dict) -> ClipTable:
    values = {name: data[name] for name in TENSORS}
    for name in data["pcm"]:
        values[name] = values[name].float() / PCM_SCALE
    return ClipTable(ids=list(data["ids"]), meta=[dict(m) for m in data["meta"]], **values)
