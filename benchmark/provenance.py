"""The provenance of a published leaderboard folder, written into its manifest.json: `build_manifest`
records the git commit and dirty flag, package versions, the publishing machine, the suite's seeds and
hashes, each dataset's config hash, the plugins' versions and source hashes, the statistics used and the
digest of every file of the folder."""
from __future__ import annotations

import json
import platform
import subprocess
from hashlib import sha256
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import BenchmarkError
from .integrity import folder_digests
from .registry import registry
from .statistics import CONTROLS, CORRECTION
from .store import ROW_COLUMNS

PACKAGES = ("torch", "torchaudio", "captum", "transformers", "speechbrain", "encodec", "numpy", "pandas",
            "scikit-learn", "scipy", "matplotlib", "soundfile")
# the published folder's layout: bumped when a file's columns or meaning change (readers check it)
SCHEMA_VERSION = 2
RESULTS_FILE = "results.parquet"
CODE_PATHS = ("benchmark", "adapters", "tasks", "pyproject.toml")


def git_state(repo: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout holding the code (None where git or the repo is absent). Only
    the code, recipes and suites count toward `dirty`: tables being published into the checkout do not."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), "--no-optional-locks", *args], capture_output=True,
                                  text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", *CODE_PATHS)
    return {"commit": commit.strip() if commit else None, "dirty": None if status is None else bool(status.strip())}


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def this_machine() -> dict[str, Any]:
    import torch
    cuda = torch.cuda.is_available()
    return {"cuda_available": cuda, "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
            "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
            # the kernels torch dispatches to (e.g. AVX2, AVX512): they set the rounding of CPU results
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def plugin_identities(names: dict[str, set[str]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, kind_names in sorted(names.items()):
        for name in sorted(kind_names):
            try:
                p = registry(kind).get(name)
                out.setdefault(kind, {})[name] = {"version": p.version, "source": p.source_hash()}
            except BenchmarkError:
                out.setdefault(kind, {})[name] = {"version": None, "source": None, "note": "no longer registered"}
    return out


def suite_configs(manifest: dict) -> dict[str, list]:
    """The suite's dataset/detector/explainer/metric configs, when its file still matches the run's hash."""
    from .suites import load_suite
    path = manifest.get("suite_file")
    try:
        suite = load_suite(path) if path else None
    except (BenchmarkError, OSError):
        return {}
    if suite is None or suite.file_hash() != manifest.get("suite_hash"):
        return {}
    return {"dataset": list(suite.datasets), "detector": list(suite.detectors), "explainer": list(suite.explainers),
            "metric": list(suite.metrics)}


def build_manifest(folder: Path, *, suite_name: str, manifest: dict, records: list[dict], rows: pd.DataFrame,
                   min_auc: float, alpha: float) -> dict[str, Any]:
    names: dict[str, set[str]] = {"dataset": set(), "detector": set(), "explainer": set(),
                                  "metric": set(rows["metric"].unique()) - {"anomaly_score"}}
    for r in records:
        for kind in ("dataset", "detector", "explainer"):
            if r.get(kind):
                names[kind].add(r[kind])
    configs = suite_configs(manifest)
    for kind, cfgs in configs.items():
        names[kind] |= {c.name for c in cfgs}
    data = {}
    for cfg in configs.get("dataset", []):
        if cfg.name in names["dataset"]:
            ident = cfg.identity()
            blob = json.dumps(ident, sort_keys=True, default=str).encode()
            data[cfg.name] = {**ident, "config_hash": sha256(blob).hexdigest()[:16]}
    statuses = [r.get("status") for r in records]
    return {
        "schema_version": SCHEMA_VERSION,
        "results_schema": {"file": RESULTS_FILE, "columns": list(ROW_COLUMNS)},
        "suite": suite_name,
        "suite_file": manifest.get("suite_file"),
        "suite_hash": manifest.get("suite_hash"),
        "seeds": manifest.get("seeds"),
        "git": git_state(Path(__file__).resolve().parent.parent),
        "python": platform.python_version(),
        "packages": package_versions(),
        "device": manifest.get("device"),
        "published_on": this_machine(),
        "cells": {"train": len(manifest.get("train", [])), "evaluate": len(manifest.get("evaluate", [])),
                  **{s: statuses.count(s) for s in ("done", "failed", "skipped")}},
        "data": data,
        "data_hash_note": ("config_hash hashes each dataset's resolved params, plugin version, adapter source "
                           "hash and recipe hash (`inputs`, what the cell keys hash); the audio files themselves "
                           "are not hashed. Empty when the suite file changed since the run."),
        "plugins": plugin_identities(names),
        "statistics": {"ci": "95 % percentile bootstrap over clips, 1000 resamples",
                       "test": "two-sided Wilcoxon signed-rank on shared (clip, seed) pairs of ranked neighbours",
                       "control_test": f"one-sided Wilcoxon signed-rank of each explainer against each control "
                                       f"({', '.join(CONTROLS)}) in the metric's direction, Holm over the "
                                       "explainers of a ranking",
                       "correction": f"{CORRECTION} over the neighbour pairs of each ranking", "alpha": alpha,
                       "min_auc": min_auc},
        # every file of the folder but this one: replay checks a stored copy against them before using it
        "files": folder_digests(folder, skip=("manifest.json",)),
    }

