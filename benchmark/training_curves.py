"""Learning curves of everything a suite trained: detectors (their train cells' logs) and interpreters
(L-MAC, L-MAC-TD, the EnCodec codec: the fit logs of the evaluate cells that trained or loaded them), as
`training.csv` (one row per run × epoch) and one figure per dataset.

Each curve is the validation loss per epoch that the stopping rule watched, with the run's stop reason
(`plateau`: no relative gain of `min_improvement` over `patience` epochs; `epochs`: the cap; `time`: the
time cap), so a reader sees whether a budget was a cap or a schedule."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .figures import PANEL_H, PANEL_W, _figure, _save, safe_name

COLUMNS = ["dataset", "detector", "explainer", "seed", "kind", "epoch", "val_loss", "stop_reason", "epochs"]


def _curve(log: dict) -> list[float]:
    """The per-epoch validation losses of one training log (detectors and the codec keep `val_curve`, the
    trained interpreters a per-epoch `history` with `val_loss`)."""
    if isinstance(log.get("val_curve"), list):
        return [float(v) for v in log["val_curve"]]
    history = log.get("history")
    if isinstance(history, list):
        return [float(h["val_loss"]) for h in history if isinstance(h, dict) and h.get("val_loss") is not None]
    return []


def training_curves(records: list[dict]) -> pd.DataFrame:
    """One row per (training run, epoch), sorted. A trained interpreter appears once, however many evaluate
    cells loaded it (deduplicated on its interpreter key, or on its cell when the record has none)."""
    rows, seen = [], set()
    for record in records:
        if record.get("status") != "done":
            continue
        if record.get("cell") == "train":
            kind, log, explainer = "detector", record.get("log") or {}, ""
            key = (record.get("dataset"), record.get("detector"), record.get("seed"))
        elif record.get("cell") == "evaluate" and record.get("fit_log"):
            kind, log, explainer = "interpreter", record["fit_log"], record.get("explainer", "")
            key = record.get("interpreter_key") or (record.get("dataset"), record.get("detector"), explainer,
                                                     record.get("seed"))
        else:
            continue
        curve = _curve(log)
        if not curve or (kind, key) in seen:
            continue
        seen.add((kind, key))
        for epoch, loss in enumerate(curve, start=1):
            rows.append({"dataset": record.get("dataset", ""), "detector": record.get("detector", ""),
                         "explainer": explainer, "seed": str(record.get("seed", "")), "kind": kind, "epoch": epoch,
                         "val_loss": loss, "stop_reason": str(log.get("stop_reason", "")), "epochs": len(curve)})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["dataset", "kind", "detector", "explainer", "seed", "epoch"],
                             kind="stable").reset_index(drop=True)


def curve_figures(table: pd.DataFrame, folder: Path) -> list[Path]:
    """Per dataset one PNG: detectors left, interpreters right; each curve divided by its first epoch's loss
    (losses of different models are on different scales), log y, the stop reason in the legend."""
    paths = []
    for dataset, group in table.groupby("dataset", sort=True):
        kinds = [k for k in ("detector", "interpreter") if (group["kind"] == k).any()]
        fig = _figure(len(kinds), 1, width=PANEL_W * 1.4, height=PANEL_H * 1.2)
        axes = np.atleast_1d(fig.subplots(1, len(kinds), squeeze=False)[0])
        for ax, kind in zip(axes, kinds, strict=True):
            runs = group[group["kind"] == kind].groupby(["detector", "explainer", "seed"], sort=True)
            for (detector, explainer, seed), run in runs:
                first = float(run["val_loss"].iloc[0])
                scale = first if np.isfinite(first) and first > 0 else 1.0
                label = "/".join(p for p in (detector, explainer) if p) + f" s{seed} ({run['stop_reason'].iloc[0]})"
                ax.plot(run["epoch"], run["val_loss"] / scale, marker=".", linewidth=1.0, label=label)
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation loss / first epoch's")
            ax.set_title(f"{kind}s — {dataset}", fontsize=9)
            ax.legend(fontsize=6)
        paths.append(_save(fig, folder / f"training-{safe_name(dataset)}.png"))
    return paths
