"""The provenance of a published leaderboard folder, written into its manifest.json: `build_manifest`
records the git commit and dirty flag, package versions, the publishing machine, the suite's seeds and
hashes, each dataset's config hash, every plugin's version, source hash and parameters, the metric specs the
rankings followed, the statistics used and the digest of every file of the folder.

What the run decided is read from the run's own record (`run_plugins`, written by the runner beside the cell
keys), never from the plugins installed when publishing: a store re-publishes byte for byte after a plugin is
edited, bumped or removed, or the suite file changes. Only the git state, the packages and the machine are
facts of the publishing moment. A store recorded before plugins were recorded falls back to the installed
plugins and the suite file, and its manifest says so (`recorded`)."""
from __future__ import annotations

import json
import platform
import subprocess
from hashlib import sha256
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import BenchmarkError
from .integrity import folder_digests
from .registry import registry
from .statistics import CONTROLS, CORRECTION, metric_specs
from .store import ROW_COLUMNS

if TYPE_CHECKING:  # a suite's configs are only read here, never built
    from .suite_types import Suite

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


def run_plugins(suite: Suite) -> dict[str, dict[str, dict[str, Any]]]:
    """What a run records of every plugin it uses: kind -> label (a dataset variant's label, else the plugin's
    name) -> the identity its cell keys hash (`PluginConfig.identity`: name, resolved params, version, source
    closure hash, recipe hash, budget, clip budget, variant), as JSON reads it back: the facts a publish
    reads instead of the installed plugins and the suite file."""
    kinds = {"dataset": suite.datasets, "detector": suite.detectors, "explainer": suite.explainers,
             "metric": suite.metrics}
    plugins = {kind: {config.label: config.identity() for config in configs} for kind, configs in kinds.items()}
    # a TOML date or a tuple must read back as it will at publish: the config hash is of what JSON returns
    return json.loads(json.dumps(plugins, sort_keys=True, default=str))


def config_hash(identity: dict[str, Any]) -> str:
    """16 hex digits of a dataset's recorded identity (what its cell keys hash)."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return sha256(blob).hexdigest()[:16]


def plugin_identities(names: dict[str, set[str]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The installed plugins' versions and source hashes: what a store recorded before `run_plugins` gets."""
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


def installed_plugins(manifest: dict, records: list[dict], rows: pd.DataFrame
                      ) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """(plugins, data) of a store recorded before `run_plugins`: the versions and source hashes installed now,
    and the dataset configs of the suite file if it still matches the run's hash (none otherwise)."""
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
            data[cfg.name] = {**ident, "config_hash": config_hash(ident)}
    return plugin_identities(names), data


def recorded_note(facts: dict[str, bool]) -> str | None:
    """What a manifest read from the installed plugins rather than the run's record (`facts`: which facts the run
    recorded), or None when it read nothing there."""
    missing = [what for what, key in (("plugin versions and source hashes", "plugins"),
                                      ("metric specs", "metric_specs")) if not facts[key]]
    if not missing:
        return None
    data = " (and dataset configs from the suite file: none when it changed since the run)" \
        if not facts["plugins"] else ""
    return (f"this store's run predates recorded plugin facts: {' and '.join(missing)} are read from the plugins "
            f"installed when publishing{data}, so they may differ from what the run used; re-run the suite to "
            "record them")


def build_manifest(folder: Path, *, suite_name: str, manifest: dict, records: list[dict], rows: pd.DataFrame,
                   min_auc: float, alpha: float) -> dict[str, Any]:
    """The manifest of `folder` from the run's record `manifest` (the store's suite record), its cell `records`
    and per-clip `rows`."""
    recorded = manifest.get("plugins")
    if recorded is not None:
        plugins = recorded
        data = {label: {**ident, "config_hash": config_hash(ident)}
                for label, ident in recorded.get("dataset", {}).items()}
        metrics = sorted(recorded.get("metric", {}))
    else:
        plugins, data = installed_plugins(manifest, records, rows)
        metrics = sorted(plugins.get("metric", {}))
    # inside `recorded_specs` (every publish) `metric_specs` answers what the rankings followed; a run's own
    # record is taken as written
    specs = manifest["metric_specs"] if "metric_specs" in manifest else metric_specs(metrics)
    facts = {"plugins": recorded is not None, "metric_specs": "metric_specs" in manifest}
    note = recorded_note(facts)
    statuses = [r.get("status") for r in records]
    return {
        "schema_version": SCHEMA_VERSION,
        "results_schema": {"file": RESULTS_FILE, "columns": list(ROW_COLUMNS)},
        "suite": suite_name,
        "suite_file": manifest.get("suite_file"),
        "suite_hash": manifest.get("suite_hash"),
        "seeds": manifest.get("seeds"),
        # the seeds whose detectors were explained (`[evaluate] seeds`); the others trained and scored only
        "explain_seeds": manifest.get("explain_seeds", manifest.get("seeds")),
        "git": git_state(Path(__file__).resolve().parent.parent),
        "python": platform.python_version(),
        "packages": package_versions(),
        "device": manifest.get("device"),
        # of training and explainer forward passes, and the run's bound on inputs per forward pass (null: the
        # device's default); older stores recorded neither
        "precision": manifest.get("precision"),
        "examples_per_forward": manifest.get("examples_per_forward"),
        "published_on": this_machine(),
        "cells": {"train": len(manifest.get("train", [])), "evaluate": len(manifest.get("evaluate", [])),
                  **{s: statuses.count(s) for s in ("done", "failed", "skipped")}},
        "data": data,
        "data_hash_note": ("config_hash hashes each dataset's resolved params, plugin version, adapter source "
                           "hash and recipe hash (`inputs`, what the cell keys hash); the audio files themselves "
                           "are not hashed."),
        "plugins": plugins,
        "metric_specs": specs,
        "recorded": facts,
        **({"recorded_note": note} if note else {}),
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
