"""The leaderboard's figures, as small PNGs (matplotlib's Agg canvas; pyplot's global state is never touched).

* `percentile_curves`: FF and chunk-F1 (and any other percentile metric) versus the percentile p, one
  line per explainer with its 95 % CI band, per dataset × detector (the planer paper's plots).
* `metric_bars`: the headline metrics of one family, bars per explainer and detector with CI error bars.
* `agreement_heatmap`: Kendall τ between the rankings different metrics give.
* `gallery`: attributions over the log-mel spectrogram, ground-truth mask outlined, clips × explainers.
* `explanation_figure`: one clip's spectrogram, attribution and time curve (`python -m benchmark explain`).
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .statistics import split_column

DPI = 80
PALETTE_COLOURS = 256
CURVES_FIRST = ("ff", "chunk_f1")
MAX_CURVE_PANELS = 6
PANEL_W, PANEL_H = 3.0, 2.4
MAP_CMAP, SPEC_CMAP, MASK_COLOUR = "inferno", "gray", "cyan"
MAP_SATURATION = 0.995


@dataclass(frozen=True)
class ExampleMap:
    """One saved example: log-mel `x: [F, T]`, `attribution: [F, T]`, `tf_mask: [F, T]` bool or None."""

    clip_id: str
    explainer: str
    x: np.ndarray
    attribution: np.ndarray
    tf_mask: np.ndarray | None


def safe_name(*parts: str) -> str:
    """A file-name stem from names that may hold slashes or spaces."""
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in parts)


def _figure(ncols: int, nrows: int, width: float = PANEL_W, height: float = PANEL_H) -> Figure:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Write a palette PNG: spectrogram panels compress about 3x smaller than as RGBA, which keeps a
    committed leaderboard folder small."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    image = Image.open(buf).convert("RGB").quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT,
                                                    dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    return path


def percentile_metrics(leaderboard: pd.DataFrame, names: set[str]) -> dict[str, list[int]]:
    """The percentile metrics among `names` -> their sorted percentiles in the leaderboard (FF and chunk-F1
    first, at most MAX_CURVE_PANELS)."""
    found: dict[str, set[int]] = {}
    for col in leaderboard.columns:
        if col.endswith(".mean"):
            metric, param = split_column(col.removesuffix(".mean"))
            if metric in names and param.isdigit():
                found.setdefault(metric, set()).add(int(param))
    found = {m: ps for m, ps in found.items() if len(ps) > 1}
    order = [m for m in CURVES_FIRST if m in found] + sorted(m for m in found if m not in CURVES_FIRST)
    return {m: sorted(found[m]) for m in order[:MAX_CURVE_PANELS]}


def percentile_curves(leaderboard: pd.DataFrame, folder: Path, titles: dict[tuple[str, str], str],
                      names: set[str], cache: Any = None) -> list[Path]:
    """One PNG per dataset × detector: each percentile metric (of `names`) versus p, a line and CI band per
    explainer. titles: (dataset, detector) -> figure title (carries the low-AUC flag). `cache`: a
    `figure_cache.FigureCache` (None: draw every figure)."""
    metrics = percentile_metrics(leaderboard, names)
    if not metrics:
        return []
    out = []
    for (dataset, detector), group in leaderboard.groupby(["dataset", "detector"], sort=True):
        title = titles.get((dataset, detector), f"{dataset} / {detector}")
        path = folder / f"curves-{safe_name(dataset, detector)}.png"
        used = ["explainer", *(f"{m}[{p}].{s}" for m, ps in metrics.items() for p in ps
                               for s in ("mean", "ci_low", "ci_high"))]
        inputs = (group[[c for c in used if c in group.columns]].reset_index(drop=True), metrics, title)
        draw = lambda g=group, t=title, p=path: _curve_figure(g, metrics, t, p)  # noqa: E731
        out.append(draw() if cache is None else cache.draw(path, inputs, draw))
    return out


def _curve_figure(group: pd.DataFrame, metrics: dict[str, list[int]], title: str, path: Path) -> Path:
    """One dataset × detector's percentile curves (see `percentile_curves`)."""
    fig = _figure(len(metrics), 1, width=max(PANEL_W, 4.5 / len(metrics)))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, (metric, ps) in zip(axes, metrics.items(), strict=True):
        cols = [f"{metric}[{p}]" for p in ps]
        for _, r in group.sort_values("explainer").iterrows():
            mean = np.array([r.get(f"{c}.mean", np.nan) for c in cols], dtype=float)
            if not np.isfinite(mean).any():
                continue
            lo = np.array([r.get(f"{c}.ci_low", np.nan) for c in cols], dtype=float)
            hi = np.array([r.get(f"{c}.ci_high", np.nan) for c in cols], dtype=float)
            line, = ax.plot(ps, mean, marker="o", markersize=3, linewidth=1.2, label=r["explainer"])
            ax.fill_between(ps, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("percentile p", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def metric_bars(leaderboard: pd.DataFrame, columns: list[str], path: Path, *, title: str,
                detector_labels: dict[str, str]) -> Path | None:
    """Bar chart of `columns` (one panel each) for one dataset: explainers on x, one bar per detector,
    95 % CI as error bars, the chance level (where defined) dashed. Margins are fixed rather than
    computed by a layout engine: these charts are the bulk of a publish's drawing time."""
    columns = [c for c in columns if f"{c}.mean" in leaderboard.columns and leaderboard[f"{c}.mean"].notna().any()]
    if not columns:
        return None
    scored = leaderboard[[f"{c}.mean" for c in columns]].notna().any(axis=1)
    explainers = sorted(leaderboard.loc[scored, "explainer"].unique())
    detectors = sorted(leaderboard["detector"].unique())
    ncols = min(4, len(columns))
    nrows = (len(columns) + ncols - 1) // ncols
    panel_w, panel_h, gap_w, gap_h = max(2.2, 0.3 * len(explainers) * len(detectors) + 0.6), 1.6, 0.55, 0.4
    labels_h, title_h, left = 0.07 * max(len(e) for e in explainers) + 0.25, 0.6, 0.45
    width, height = left + ncols * panel_w + (ncols - 1) * gap_w + 0.15, title_h + nrows * panel_h + \
        (nrows - 1) * gap_h + labels_h
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True).ravel()
    fig.subplots_adjust(left=left / width, right=1 - 0.15 / width, bottom=labels_h / height, top=1 - title_h / height,
                        wspace=gap_w / panel_w, hspace=gap_h / panel_h)
    bar_w = 0.8 / len(detectors)
    x = np.arange(len(explainers))
    for ax, col in zip(axes, columns, strict=False):
        for k, det in enumerate(detectors):
            sub = leaderboard[leaderboard["detector"] == det].set_index("explainer").reindex(explainers)
            mean = sub[f"{col}.mean"].to_numpy(dtype=float)
            err = np.abs(np.stack([mean - sub[f"{col}.ci_low"].to_numpy(dtype=float),
                                   sub[f"{col}.ci_high"].to_numpy(dtype=float) - mean]))
            ax.bar(x + (k - (len(detectors) - 1) / 2) * bar_w, np.nan_to_num(mean), bar_w,
                   yerr=np.nan_to_num(err), capsize=2, label=detector_labels.get(det, det),
                   error_kw={"linewidth": 0.8})
        chance = leaderboard.get(f"{col}.chance")
        if chance is not None and np.isfinite(chance.to_numpy(dtype=float)).any():
            ax.axhline(float(np.nanmean(chance.to_numpy(dtype=float))), color="k", linestyle="--", linewidth=0.8)
        ax.set_title(col, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for i, ax in enumerate(axes):
        ax.set_xticks(x, explainers, rotation=45, ha="right", fontsize=7)
        # only the lowest panel of each column carries the explainer names
        ax.xaxis.set_tick_params(labelbottom=i + ncols >= len(columns))
        ax.set_visible(i < len(columns))
    axes[0].legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    return _save(fig, path)


def agreement_heatmap(agreement: pd.DataFrame, path: Path) -> Path | None:
    """Kendall τ matrix from `statistics.metric_agreement`'s long table (metric_a, metric_b, tau)."""
    if agreement.empty:
        return None
    matrix = agreement.pivot(index="metric_a", columns="metric_b", values="tau")
    names = sorted(matrix.index)
    matrix = matrix.loc[names, names].to_numpy(dtype=float)
    side = max(3.0, 0.35 * len(names) + 1.5)
    fig = _figure(1, 1, width=side + 0.8, height=side)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    if len(names) <= 14:
        for i in range(len(names)):
            for j in range(len(names)):
                if np.isfinite(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Kendall τ")
    ax.set_title("agreement between metric rankings", fontsize=9)
    return _save(fig, path)


def draw_map(ax, x: np.ndarray, attribution: np.ndarray, tf_mask: np.ndarray | None, *,
             extent: tuple[float, float, float, float] | None = None) -> None:
    """Log-mel `x: [F, T]` in grey, the attribution `[F, T]` over it (scaled per clip so that its
    MAP_SATURATION quantile is full scale; opacity grows with it), the ground-truth mask `[F, T]` outlined."""
    ax.imshow(x.astype(np.float32), origin="lower", aspect="auto", cmap=SPEC_CMAP, extent=extent,
              interpolation="nearest")
    a = attribution.astype(np.float32)
    a = a - a.min()
    scale = float(np.quantile(a, MAP_SATURATION))  # heavy-tailed maps (error maps) stay visible
    a = np.clip(a / scale, 0.0, 1.0) if scale > 0 else (a > 0).astype(np.float32)
    rgba = colormaps[MAP_CMAP](a)
    rgba[..., 3] = 0.85 * a
    ax.imshow(rgba, origin="lower", aspect="auto", extent=extent, interpolation="nearest")
    if tf_mask is not None and tf_mask.any() and not tf_mask.all():
        f, t = tf_mask.shape
        if extent is None:
            xs, ys = np.arange(t), np.arange(f)
        else:
            xs, ys = np.linspace(extent[0], extent[1], t), np.linspace(extent[2], extent[3], f)
        ax.contour(xs, ys, tf_mask.astype(np.float32), levels=[0.5], colors=MASK_COLOUR, linewidths=0.9)


def gallery(maps: list[ExampleMap], path: Path, *, title: str) -> Path | None:
    """Clips as rows, explainers as columns, each panel an attribution over its spectrogram."""
    if not maps:
        return None
    clips = list(dict.fromkeys(m.clip_id for m in maps))
    explainers = sorted({m.explainer for m in maps})
    by_key = {(m.clip_id, m.explainer): m for m in maps}
    fig = _figure(len(explainers), len(clips), width=max(1.8, 5.0 / len(explainers)), height=1.35)
    axes = fig.subplots(len(clips), len(explainers), squeeze=False)
    for i, clip in enumerate(clips):
        for j, ex in enumerate(explainers):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            m = by_key.get((clip, ex))
            if m is not None:
                draw_map(ax, m.x, m.attribution, m.tf_mask)
            if i == 0:
                ax.set_title(ex, fontsize=8)
            if j == 0:
                ax.set_ylabel(clip.rsplit("/", 1)[-1][-22:], fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def explanation_figure(x: np.ndarray, attribution: np.ndarray, path: Path, *, title: str,
                       frames_per_second: float, tf_mask: np.ndarray | None = None) -> Path:
    """One clip: log-mel `x: [F, T]`, attribution `[F, T]` over it, and the attribution summed over
    frequency versus time (the curve the percentile metrics threshold)."""
    n_mels, n_frames = x.shape
    extent = (0.0, n_frames / frames_per_second, 0.0, float(n_mels))
    fig = _figure(1, 3, width=6.0, height=1.8)
    spec_ax, map_ax, curve_ax = fig.subplots(3, 1, sharex=True)
    spec_ax.imshow(x.astype(np.float32), origin="lower", aspect="auto", cmap="magma", extent=extent,
                   interpolation="nearest")
    spec_ax.set_ylabel("mel band", fontsize=8)
    spec_ax.set_title("log-mel spectrogram", fontsize=8)
    draw_map(map_ax, x, attribution, tf_mask, extent=extent)
    map_ax.set_ylabel("mel band", fontsize=8)
    map_ax.set_title("attribution" + (" (ground truth outlined)" if tf_mask is not None else ""), fontsize=8)
    t = (np.arange(n_frames) + 0.5) / frames_per_second
    curve_ax.plot(t, attribution.astype(np.float64).sum(axis=0), linewidth=0.9)
    curve_ax.set_xlabel("time (s)", fontsize=8)
    curve_ax.set_ylabel("Σ over bands", fontsize=8)
    curve_ax.grid(alpha=0.3)
    for ax in (spec_ax, map_ax, curve_ax):
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
