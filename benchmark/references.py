"""Reference levels published beside a metric's value: value labels that score the clips themselves, not the
explanation (`si_sdr[input]`: the clip played as its own explanation; `si_sdr[oracle]`: the true anomaly's
ideal mask through the masking path, `benchmark/metrics/audio_quality.py`). They read an explanation against
what no explanation and a perfect one would score, so they are never ranked, tested or flagged as degenerate:
on the same clips they are the same for every explainer by design."""
from __future__ import annotations

import pandas as pd

REFERENCE_PARAMS = ("input", "oracle")


def is_reference(column: str) -> bool:
    """`metric[param]` (with or without a `.stat` suffix) whose param is a reference level."""
    _, bracket, rest = column.partition("[")
    return bool(bracket) and rest.split("]", 1)[0] in REFERENCE_PARAMS


def without_references(found: pd.DataFrame, column: str = "metric") -> pd.DataFrame:
    """The rows of a per-column table (degenerate columns, tests) that are not about a reference level."""
    keep = found[column].map(is_reference).astype(bool)  # bool even when empty: the frame keeps its columns
    return found.loc[~keep].reset_index(drop=True)
