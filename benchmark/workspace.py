"""What cells share inside one worker process: datasets and split tables, loaded detectors, the device."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .dataset import ClipTable, Dataset
from .detector import Detector
from .errors import BenchmarkError
from .registry import registry
from .store import Store
from .suite_types import PluginConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise BenchmarkError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def group_index(meta: list[dict[str, Any]]) -> tuple[torch.Tensor, list[str]]:
    """Machine/section class of every clip, `[N]` long, and the sorted class names.

    A clip whose attributes name a recording `group` (the planer's board sizes) is classed by machine,
    section and group, so a one-machine dataset still gives an auxiliary classifier something to learn.
    """
    names = [f"{m.get('machine', '')}/{m.get('section', '')}"
             + (f"/{m['attributes']['group']}" if (m.get("attributes") or {}).get("group") else "") for m in meta]
    classes = sorted(set(names))
    lookup = {c: i for i, c in enumerate(classes)}
    return torch.tensor([lookup[n] for n in names], dtype=torch.long), classes


def _ident(config: PluginConfig) -> str:
    return json.dumps({"name": config.name, "params": config.params, "variant": config.variant}, sort_keys=True,
                      default=str)


@dataclass
class Workspace:
    store: Store
    device: torch.device
    # the run's bound on inputs per forward pass (`benchmark.compute`; None: the device's default)
    forward_bound: int | None = None
    data_params: dict[str, Any] = field(default_factory=dict)
    _datasets: dict[str, Dataset] = field(default_factory=dict)
    _tables: dict[tuple[str, str], ClipTable] = field(default_factory=dict)
    _detectors: dict[str, Detector] = field(default_factory=dict)

    def dataset(self, config: PluginConfig) -> Dataset:
        ident = _ident(config)
        if ident not in self._datasets:
            from .variants import generation_config, with_variant
            made = generation_config(config)
            base = replace(made, variant=())
            if made is not config:  # another generation (a difficulty sweep's): the plugin's own clips
                self._datasets[ident] = self.dataset(made)
            elif base.variant != config.variant:
                self._datasets[ident] = with_variant(self.dataset(base), config)
            else:
                self._datasets[ident] = registry("dataset").make(config.name, **config.params)
        return self._datasets[ident]

    def table(self, config: PluginConfig, split: str) -> ClipTable:
        """A split, stacked once per process; a variant's from its base dataset's (rendered or read once)."""
        ident = _ident(config)
        if (ident, split) not in self._tables:
            from .variants import generation_config
            made = generation_config(config)
            if made is not config:
                self._tables[(ident, split)] = self.table(made, split)
            elif config.variant:
                base = self.table(replace(config, variant=()), split)
                self._tables[(ident, split)] = self.dataset(config).table(base)
            else:
                from .data_cache import cached_table
                self._tables[(ident, split)] = cached_table(self.store, config, self.dataset(config), split)
        return self._tables[(ident, split)]

    def detector(self, train_key: str, config: PluginConfig) -> Detector:
        """A trained detector from its checkpoint, frozen, in eval mode, on the device."""
        if train_key not in self._detectors:
            ckpt = self.store.load_checkpoint(train_key, self.device)
            if ckpt is None:
                raise RuntimeError(f"no checkpoint for train cell {train_key}")
            det = registry("detector").make(config.name, **config.params).to(self.device)
            det.build(tuple(ckpt["grid"]), ckpt["n_groups"])
            det.load_state_dict(ckpt["state"])
            det.to(self.device).eval().requires_grad_(False)
            self._detectors = {train_key: det}  # keep one: detectors can be large
        return self._detectors[train_key]
