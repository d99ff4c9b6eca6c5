"""audio-xai-bench: explanation methods x anomalous-sound detectors x datasets, under shared metrics.

Python API for notebooks and tests::

    import benchmark
    benchmark.list_plugins("explainer")
    det = benchmark.make("detector", "ae")
    ds = benchmark.load_dataset("synthetic-machines", size="smoke", seed=0)

Metric functions live in `benchmark.metrics`.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def list_plugins(kind: str) -> list[dict[str, Any]]:
    """Every registered plugin of a kind ("dataset(s)", "detector(s)", ...) with its metadata."""
    from .registry import registry
    return [p.describe() for p in registry(kind).plugins()]


def make(kind: str, name: str, **params: Any) -> Any:
    """Instantiate a registered plugin; unknown names fail with a did-you-mean message."""
    from .registry import registry
    return registry(kind).make(name, **params)


def load_dataset(name: str, **params: Any):
    """A registered dataset object (clips stream lazily from `.clips(split)`)."""
    return make("dataset", name, **params)


__all__ = ["list_plugins", "make", "load_dataset", "__version__"]
