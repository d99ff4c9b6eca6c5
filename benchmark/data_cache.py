"""Generated datasets, stacked once: a split of a synthetic dataset is rendered by the first process that needs it
(or by `data synth --store`) and stored under `<out>/data/<name>-<split>-<key>.pt`; every later process loads
the tensors instead of rendering again.

The key hashes the dataset's identity (name, parameters, version, the import closure of its plugin and its
recipe's values, not its comments), the split and the import closure of `dataset.py` (which stacks the
clips). The parameters are keyed as the plugin resolves them, its defaults filled in: a suite that states a
default (`seed = 0`) and one that leaves it out make the same clips and share the files. Values are keyed as
written, so `difficulty = 1` and `difficulty = 1.0` are two keys. Only datasets that declare `generated = True`
are cached: a dataset read from disk could change under the same key.

Waveforms that are exact 16-bit PCM (the synthetic clips are) are stored as int16, losslessly.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import torch

from .dataset import ClipTable, Dataset, load_table, notice
from .registry import closure_hash
from .store import DamagedFile, Store, checkpoint_bytes, read_checkpoint
from .suite_types import PluginConfig

PCM_SCALE = 32768.0
TENSORS = ("x", "labels", "waveform", "tf_mask", "frame_labels", "anomaly", "has_truth")


def cache_key(config: PluginConfig, split: str) -> str:
    """The 20-hex-digit key of a split's stored tensors (see the module's docstring for what it hashes)."""
    identity = {**config.identity(), "params": resolved_params(config)}
    blob = json.dumps({"dataset": identity, "split": split,
                       "stacking": closure_hash(Path(__file__).resolve().parent / "dataset.py")},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def resolved_params(config: PluginConfig) -> dict[str, Any]:
    """The parameters the plugin's factory runs with: `config.params` over the factory's defaults, the
    keyword overflow (`**overrides`) spread beside the named ones."""
    signature = inspect.signature(config.plugin.factory)
    bound = signature.bind(**config.params)
    bound.apply_defaults()
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out


def cache_relpath(config: PluginConfig, split: str) -> str:
    """Where under the store a split of a generated dataset is kept: `data/<name>-<split>-<key>.pt`."""
    return f"data/{config.name}-{split}-{cache_key(config, split)}.pt"


def cached_table(store: Store, config: PluginConfig, dataset: Dataset, split: str) -> ClipTable:
    """The split's table: from the store when a process made it before, else stacked and stored (atomically:
    a process stopped while stacking or writing leaves no file)."""
    if not getattr(dataset, "generated", False):
        return load_table(dataset, split)
    relpath = cache_relpath(config, split)
    path = store.root / relpath
    if path.is_file():
        try:
            return _unpack(read_checkpoint(path, "cpu"))
        except (DamagedFile, KeyError, TypeError, ValueError) as exc:
            notice(f"cached data '{path}' is unreadable ({exc}): generating it again")
    table = load_table(dataset, split)
    store.write(relpath, packed_table(table))
    return table


def packed_table(table: ClipTable) -> bytes:
    """A split's table as the cache stores it (the bytes a driver writes for a worker that rendered it)."""
    return checkpoint_bytes(_pack(table))


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
