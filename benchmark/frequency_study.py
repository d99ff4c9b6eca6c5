"""The frequency study's tables and figures (the DCASE 2022 SLIME paper), from a published suite's results.

* `sweep_table` — `filter_sweep.csv`: detection AUC/pAUC of every filter-sweep variant per machine and section
  (and pooled, machine "all"), beside the unfiltered data's, with AST+kNN's auxiliary-task accuracy on its
  validation clips; `sweep_figure` plots it against the cutoff (the paper's Figure 3).
* `feature_table` — `stft_vs_mel.csv`: the same detector on the log-mel and on the log-power STFT grid.
* `band_profiles` — `band_profiles.csv`: the median over clips of each explanation's band mass (share of its
  positive relevance per mel band, `benchmark.metrics.bands.band_mass`) per machine × section × condition
  (inlier / anomaly), from the stored explanations; `band_heatmaps` draws them, one panel per explainer.

Every function returns None when the suite ran nothing of the kind, so any suite can be published.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .figures import _figure, _save, safe_name
from .variants import parse_label

SWEEP_COLUMNS = ["dataset", "detector", "machine", "section", "filter", "cutoff_hz", "auc", "pauc",
                 "unfiltered_auc", "auc_drop", "aux_accuracy", "n_normal", "n_anomalous"]
CONDITIONS = {0: "inlier", 1: "anomaly"}
N_BANDS = 8


def _labelled(detectors: pd.DataFrame) -> pd.DataFrame:
    parts = pd.DataFrame([parse_label(str(d)) for d in detectors["dataset"]], index=detectors.index)
    return pd.concat([detectors, parts], axis=1)


def _aux_accuracy(records: list[dict]) -> dict[tuple[str, str], float]:
    """(dataset label, detector) -> the auxiliary classifier's validation accuracy its train log reports."""
    out = {}
    for r in records:
        value = (r.get("log") or {}).get("val_accuracy") if r.get("cell") == "train" else None
        if value is not None:
            out[(r["dataset"], r["detector"])] = float(value)
    return out


def sweep_table(detectors: pd.DataFrame, records: list[dict]) -> pd.DataFrame | None:
    """`filter_sweep.csv` (module doc); None without filter-sweep variants. `dataset` is the base dataset,
    `auc_drop` the unfiltered AUC minus the filtered one; `aux_accuracy` is per train cell (pooled rows)."""
    if detectors.empty or "dataset" not in detectors.columns:
        return None
    d = _labelled(detectors)
    d = d[d["difficulty"].isna()]  # a difficulty sweep's generations are not filtered copies
    swept = d[(d["filter"] != "") & (d["features"] == "mel")]
    if swept.empty:
        return None
    plain = d[(d["filter"] == "") & (d["features"] == "mel")].set_index(["base", "detector", "machine", "section"])
    aux = _aux_accuracy(records)
    rows = []
    for _, r in swept.iterrows():
        key = (r["base"], r["detector"], str(r["machine"]), str(r["section"]))
        unfiltered = float(plain["auc"].get(key, np.nan))
        pooled = str(r["machine"]) == "all"
        rows.append({"dataset": r["base"], "detector": r["detector"], "machine": str(r["machine"]),
                     "section": str(r["section"]), "filter": r["filter"], "cutoff_hz": r["cutoff_hz"],
                     "auc": r["auc"], "pauc": r.get("pauc", np.nan), "unfiltered_auc": unfiltered,
                     "auc_drop": unfiltered - float(r["auc"]),
                     "aux_accuracy": aux.get((r["dataset"], r["detector"]), np.nan) if pooled else np.nan,
                     "n_normal": r.get("n_normal", np.nan), "n_anomalous": r.get("n_anomalous", np.nan)})
    out = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    return out.sort_values(["dataset", "detector", "machine", "section", "filter", "cutoff_hz"],
                           kind="stable").reset_index(drop=True)


def feature_table(detectors: pd.DataFrame) -> pd.DataFrame | None:
    """`stft_vs_mel.csv`: per base dataset, detector, machine and section, AUC and pAUC on both grids (and the
    STFT's gain); None unless some detector ran on an STFT variant of an unfiltered dataset."""
    if detectors.empty or "dataset" not in detectors.columns:
        return None
    d = _labelled(detectors)
    d = d[(d["filter"] == "") & d["difficulty"].isna()]
    stft = d[d["features"] == "stft"]
    if stft.empty:
        return None
    keys = ["base", "detector", "machine", "section"]
    mel = d[d["features"] == "mel"][[*keys, "auc", "pauc"]]
    out = stft[[*keys, "auc", "pauc"]].merge(mel, on=keys, how="left", suffixes=("_stft", "_mel"))
    out["auc_gain_stft"] = out["auc_stft"] - out["auc_mel"]
    out = out.rename(columns={"base": "dataset"})
    return out[["dataset", "detector", "machine", "section", "auc_mel", "auc_stft", "auc_gain_stft", "pauc_mel",
                "pauc_stft"]].sort_values(["dataset", "detector", "machine", "section"],
                                          kind="stable").reset_index(drop=True)


def sweep_figure(table: pd.DataFrame, folder: Path) -> list[Path]:
    """Per base dataset: AUC versus cutoff, one panel per machine (pooled 'all' first), a line per detector and
    filter (low-pass solid, high-pass dashed), the unfiltered AUC dotted; and, where the detector reports one,
    its auxiliary-task accuracy versus cutoff."""
    paths = []
    for dataset, part in table.groupby("dataset", sort=True):
        # per machine: the mean of its sections' AUCs (DCASE scores sections); "all": the pooled AUC
        per_machine = part[part["machine"] != "all"].groupby(["detector", "filter", "cutoff_hz", "machine"],
                                                             as_index=False)[["auc", "unfiltered_auc"]].mean()
        pooled = pd.concat([part[part["machine"] == "all"], per_machine], ignore_index=True)
        machines = ["all", *sorted(set(pooled["machine"]) - {"all"})]
        fig = _figure(len(machines), 1, width=max(3.2, 6.4 / len(machines)), height=2.8)
        axes = fig.subplots(1, len(machines), squeeze=False)[0]
        cutoffs = sorted(part["cutoff_hz"].unique())
        colours = {det: f"C{i}" for i, det in enumerate(sorted(part["detector"].unique()))}
        for ax, machine in zip(axes, machines, strict=True):
            here = pooled[pooled["machine"] == machine]
            for (det, kind), line in here.groupby(["detector", "filter"], sort=True):
                line = line.sort_values("cutoff_hz")
                ax.plot(line["cutoff_hz"], line["auc"], "-" if kind == "lowpass" else "--", marker="o",
                        markersize=3, color=colours[det], label=f"{det} {kind}")
                base = line["unfiltered_auc"].dropna()
                if len(base):
                    ax.axhline(float(base.iloc[0]), color=colours[det], linestyle=":", linewidth=1)
            ax.axhline(0.5, color="grey", linewidth=0.6)
            _cutoff_axis(ax, cutoffs)
            ax.set_ylim(0.3, 1.02)
            ax.set_title("pooled" if machine == "all" else f"{machine} (mean of sections)", fontsize=9)
            ax.set_xlabel("cutoff (Hz)", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel("AUC", fontsize=8)
        axes[0].legend(fontsize=6, loc="lower right")
        fig.suptitle(f"{dataset}: AUC vs cutoff (dotted: unfiltered)", fontsize=9)
        paths.append(_save(fig, folder / f"sweep-{safe_name(dataset)}.png"))
        aux = pooled[(pooled["machine"] == "all") & pooled["aux_accuracy"].notna()]
        if not aux.empty:
            fig = _figure(1, 1, width=3.6, height=2.6)
            ax = fig.subplots()
            for (det, kind), line in aux.groupby(["detector", "filter"], sort=True):
                line = line.sort_values("cutoff_hz")
                ax.plot(line["cutoff_hz"], line["aux_accuracy"], "-" if kind == "lowpass" else "--", marker="o",
                        markersize=3, color=colours[det], label=f"{det} {kind}")
            _cutoff_axis(ax, cutoffs)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("cutoff (Hz)", fontsize=8)
            ax.set_ylabel("auxiliary-task accuracy", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
            fig.suptitle(f"{dataset}: auxiliary task vs cutoff", fontsize=9)
            paths.append(_save(fig, folder / f"sweep-aux-{safe_name(dataset)}.png"))
    return paths


def _cutoff_axis(ax, cutoffs: list[float]) -> None:
    """A log axis ticked at the swept cutoffs (in Hz, or kHz from 1 kHz up)."""
    ax.set_xscale("log")
    ticks = cutoffs if len(cutoffs) <= 8 else cutoffs[:: (len(cutoffs) + 7) // 8]
    ax.set_xticks(ticks, [f"{c / 1000:g}k" if c >= 1000 else f"{c:g}" for c in ticks], fontsize=7)
    ax.minorticks_off()


def band_profiles(store, records: list[dict], rows: pd.DataFrame, n_bands: int = N_BANDS) -> pd.DataFrame | None:
    """`band_profiles.csv` (module doc): one row per dataset, detector, explainer, machine, section, condition
    and band, with the median band mass over that group's clips and the clip count; None when no stored
    explanation carries its clip ids or no clip has a machine. `rows`: per-clip rows that name every test clip's
    machine, section and label (the anomaly scores)."""
    import torch

    from .explain_step import EXPLANATION_FILE, StoredExplanations
    from .metrics.bands import band_mass
    from .store import DamagedFile

    clips = rows.drop_duplicates(["dataset", "clip_id"]).set_index(["dataset", "clip_id"])
    out = []
    for r in records:
        if r.get("cell") != "evaluate" or r.get("status") != "done" or not r.get("explain_key"):
            continue
        explained = store.status(r["explain_key"]) or {}
        ids = explained.get("clip_ids")
        if not ids:
            continue
        relpath = store.cell_dir(r["explain_key"]).relative_to(store.root).as_posix() + "/" + EXPLANATION_FILE
        try:
            stored = StoredExplanations.load(store, relpath, len(ids))
        except (DamagedFile, OSError):
            continue
        attribution = stored.attribution.float()
        if attribution.dim() == 4:
            attribution = attribution[:, 0]
        if attribution.shape[-2] < n_bands:
            continue
        with torch.no_grad():
            mass = band_mass(attribution, n_bands).numpy()
        meta = clips.reindex([(r["dataset"], i) for i in ids])
        frame = pd.DataFrame(mass, columns=range(n_bands))
        frame["machine"] = meta["machine"].astype(str).to_numpy()
        frame["section"] = meta["section"].astype(str).to_numpy()
        frame["condition"] = meta["label"].map(CONDITIONS).to_numpy()
        frame = frame[frame["condition"].notna() & (frame["machine"] != "") & (frame["machine"] != "nan")]
        if frame.empty:
            continue
        long = frame.melt(id_vars=["machine", "section", "condition"], var_name="band", value_name="mass")
        group = long.groupby(["machine", "section", "condition", "band"], sort=True)["mass"]
        summary = pd.concat([group.median().rename("median_mass"), group.size().rename("n_clips")], axis=1)
        summary = summary.reset_index()
        summary.insert(0, "explainer", r["explainer"])
        summary.insert(0, "detector", r["detector"])
        summary.insert(0, "dataset", r["dataset"])
        out.append(summary)
    if not out:
        return None
    table = pd.concat(out, ignore_index=True)
    table["band"] = table["band"].astype(int)
    return table.sort_values(["dataset", "detector", "explainer", "machine", "section", "condition", "band"],
                             kind="stable").reset_index(drop=True)


def band_heatmaps(profiles: pd.DataFrame, folder: Path, first: str = "slime") -> list[Path]:
    """One PNG per dataset × detector: a panel per explainer (`first` leading), bands (low at the bottom) by
    machine/section/condition columns, the median band mass as colour (shared 0 … max scale)."""
    paths = []
    for (dataset, detector), part in profiles.groupby(["dataset", "detector"], sort=True):
        explainers = sorted(part["explainer"].unique(), key=lambda e: (e != first, e))
        columns = part[["machine", "section", "condition"]].drop_duplicates().sort_values(
            ["machine", "section", "condition"], key=lambda s: s.map({"inlier": 0, "anomaly": 1}).fillna(s)
            if s.name == "condition" else s)
        labels = [f"{m}/{s} {'A' if c == 'anomaly' else 'N'}" for m, s, c in columns.itertuples(index=False)]
        n_bands = int(part["band"].max()) + 1
        vmax = float(part["median_mass"].max()) or 1.0
        ncols = min(3, len(explainers))
        nrows = (len(explainers) + ncols - 1) // ncols
        fig = _figure(ncols, nrows, width=max(3.0, 0.28 * len(labels) + 1.0), height=2.6)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        image = None
        for ax, explainer in zip(axes, explainers, strict=False):
            here = part[part["explainer"] == explainer].set_index(["machine", "section", "condition", "band"])
            grid = np.full((n_bands, len(labels)), np.nan)
            for j, (m, s, c) in enumerate(columns.itertuples(index=False)):
                for b in range(n_bands):
                    key = (m, s, c, b)
                    if key in here.index:
                        grid[b, j] = float(here.loc[key, "median_mass"])
            image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax,
                              interpolation="nearest")
            ax.set_title(explainer, fontsize=9)
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(n_bands), [str(b) for b in range(n_bands)], fontsize=6)
            ax.set_ylabel("mel band", fontsize=7)
        for ax in axes[len(explainers):]:
            ax.set_axis_off()
        if image is not None:
            fig.colorbar(image, ax=list(axes[:len(explainers)]), shrink=0.8, label="median band mass")
        fig.suptitle(f"{dataset} / {detector}: median share of relevance per mel band (N inlier, A anomaly)",
                     fontsize=9)
        paths.append(_save(fig, folder / f"bands-{safe_name(dataset, detector)}.png"))
    return paths
