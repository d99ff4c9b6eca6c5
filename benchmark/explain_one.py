"""`python -m benchmark explain FILE.wav`: one recording through a trained detector and one explainer.

The detector comes from a train checkpoint (`<out>/checkpoints/<key>.pt`: `state`, `grid`, `n_groups`, and
in newer runs `spec` and `params`) or from a suite run folder, where the train cell of that detector is
looked up. The clip is downmixed, resampled to the checkpoint's FeatureSpec and cropped or zero-padded to
the detector's grid, so the explanation lands on the same canonical grid as in the benchmark.

Writes `<stem>-<detector>-<explainer>.png` (spectrogram, attribution, time curve) and, for explainers
that return audio, `<stem>-<detector>-<explainer>.explanation.wav` (and `.masked_out.wav` where given).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .cells import expand
from .dataset import notice
from .detector import Detector
from .errors import BenchmarkError, CellFailure
from .explain_step import check_explanation
from .explainer import Explainer
from .features import FeatureSpec, LogMel, preset
from .figures import explanation_figure, safe_name
from .registry import registry
from .store import Store, read_checkpoint
from .suites import load_suite
from .types import Batch, Explanation
from .workspace import resolve_device

EXPLAIN_SEED = 0
PLANER_MELS = 80


@dataclass
class ExplainedClip:
    """One explained recording: `batch` of one clip (x `[1, 1, F, T]`, waveform `[1, N]`), the explanation,
    the detector's anomaly score, calibrated probability and decision."""

    batch: Batch
    explanation: Explanation
    spec: FeatureSpec
    score: float
    p_anom: float
    anomalous: bool
    duration_s: float


def spec_for(checkpoint: dict[str, Any]) -> FeatureSpec:
    """The FeatureSpec a detector was trained on: stored in the checkpoint, else the preset its mel count
    implies (80 -> planer, otherwise dcase) at the duration that gives the checkpoint's T frames."""
    n_mels, n_frames = (int(v) for v in checkpoint["grid"])
    if "spec" in checkpoint:
        spec = FeatureSpec(**checkpoint["spec"])
    else:
        base = preset("planer" if n_mels == PLANER_MELS else "dcase")
        spec = base.with_duration((n_frames - 1) * base.hop_length / base.sample_rate)
    if spec.n_bins != n_mels:
        raise BenchmarkError(f"checkpoint grid has {n_mels} frequency rows but its feature spec {spec.n_bins}: "
                             f"the checkpoint is inconsistent; retrain the detector")
    return spec


def clip_samples(spec: FeatureSpec, n_frames: int) -> int:
    """Samples that give exactly `n_frames` frames: the spec's nominal length when it does, else (T − 1)·hop."""
    return spec.n_samples if spec.frames_for(spec.n_samples) == n_frames else (n_frames - 1) * spec.hop_length


def read_clip(wav: Path, spec: FeatureSpec, n_samples: int) -> tuple[torch.Tensor, float]:
    """Mono waveform `[n_samples]` at the spec's rate (channels averaged, cropped or zero-padded) and the
    recording's own duration in seconds."""
    try:
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:
        raise BenchmarkError(f"cannot read '{wav}' as audio ({exc}); pass a WAV/FLAC file") from None
    if data.shape[0] == 0:
        raise BenchmarkError(f"'{wav}' holds no samples")
    if not np.isfinite(data).all():
        raise BenchmarkError(f"'{wav}' has non-finite samples (NaN or infinity): pass a recording of finite samples")
    mono = torch.from_numpy(data.mean(axis=1))
    if rate != spec.sample_rate:
        mono = torchaudio.functional.resample(mono, rate, spec.sample_rate)
    duration_s = data.shape[0] / rate
    mono = mono[:n_samples]
    return torch.nn.functional.pad(mono, (0, n_samples - len(mono))), duration_s


def find_train_checkpoint(suite_run: Path, detector: str, dataset: str | None) -> tuple[Path, str]:
    """The checkpoint and key of the finished train cell of `detector` (lowest seed) in a run folder."""
    cells = Path(suite_run) / "cells"
    if not cells.is_dir():
        raise BenchmarkError(f"'{suite_run}' has no cells/ folder: pass the --out folder of a suite run")
    found = []
    store = Store(suite_run)
    for path in sorted(cells.glob("*/cell.json")):
        record = store.status(path.parent.name)
        if record is not None and record.get("cell") == "train" and record.get("status") == "done":
            found.append((path.parent.name, record))
    mine = [(k, r) for k, r in found if r["detector"] == detector and dataset in (None, r["dataset"])]
    if not mine:
        have = sorted({f"{r['detector']} on {r['dataset']}" for _, r in found}) or ["none"]
        raise BenchmarkError(f"no finished train cell of detector {detector!r}"
                             f"{f' on dataset {dataset!r}' if dataset else ''} in '{suite_run}' "
                             f"(trained there: {', '.join(have)})")
    datasets = sorted({r["dataset"] for _, r in mine})
    if len(datasets) > 1:
        raise BenchmarkError(f"detector {detector!r} was trained on several datasets in '{suite_run}' "
                             f"({', '.join(datasets)}): choose one with --dataset")
    key, _ = min(mine, key=lambda kr: (kr[1]["seed"], kr[0]))
    path = Path(suite_run) / "checkpoints" / f"{key}.pt"
    if not path.is_file():
        raise BenchmarkError(f"train cell {key} has no checkpoint at '{path}': rerun the suite to rebuild it")
    return path, key


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    if not Path(path).is_file():
        raise BenchmarkError(f"checkpoint '{path}' does not exist: pass <out>/checkpoints/<key>.pt of a train cell")
    ckpt = read_checkpoint(Path(path), device)
    if not {"state", "grid", "n_groups"} <= set(ckpt):
        raise BenchmarkError(f"'{path}' is not a detector checkpoint (needs state, grid, n_groups): "
                             f"pass the checkpoint of a train cell")
    return ckpt


def load_detector(ckpt: dict[str, Any], name: str, device: torch.device) -> Detector:
    """A frozen detector in eval mode on `device`, rebuilt from its registered name and checkpoint."""
    stored = ckpt.get("detector")
    if stored is not None and stored != name:
        raise BenchmarkError(f"the checkpoint holds detector {stored!r}, not {name!r}: pass --detector {stored}")
    det = registry("detector").make(name, **ckpt.get("params", {})).to(device)
    det.build(tuple(int(v) for v in ckpt["grid"]), int(ckpt["n_groups"]))
    det.load_state_dict(ckpt["state"])
    return det.to(device).eval().requires_grad_(False)


def interpreter_state(suite_run: Path | None, train_key: str | None, explainer: str,
                      device: torch.device) -> dict[str, Any]:
    """What a trained explainer learnt in a suite run: the checkpoint under the interpreter key of the suite's
    config of that explainer on this train cell (found through the run's suites/*.json records)."""
    if suite_run is None or train_key is None:
        raise BenchmarkError(f"explainer {explainer!r} learns from the training clips: use --suite-run with a run "
                             f"that evaluated it, not --checkpoint")
    for record_path in sorted((Path(suite_run) / "suites").glob("*.json")):
        record = json.loads(record_path.read_text())
        if train_key not in record.get("train", []):
            continue
        try:
            suite = load_suite(record["suite_file"])
        except BenchmarkError:
            continue
        _, evals = expand(suite)
        for cell in evals:
            if cell.train.key == train_key and cell.explainer.name == explainer:
                path = Path(suite_run) / "checkpoints" / f"{cell.interpreter_key}.pt"
                if path.is_file():
                    state = read_checkpoint(path, device).get("state")
                    if not isinstance(state, dict):
                        raise BenchmarkError(f"'{path}' holds no interpreter state: rerun the suite to retrain it")
                    return state
    raise BenchmarkError(f"no trained {explainer!r} for train cell {train_key} in '{suite_run}' under the current "
                         f"adapter sources: rerun the suite (it evaluates {explainer} with this detector) to train it")


def explain_clip(wav: Path, detector: Detector, explainer: Explainer, *, name: str, spec: FeatureSpec,
                 grid: tuple[int, int], device: torch.device) -> ExplainedClip:
    """Read, featurise and explain one recording on the detector's grid `(F, T)` with explainer `name`."""
    waveform, duration_s = read_clip(wav, spec, clip_samples(spec, grid[1]))
    waveform = waveform.to(device)[None]
    x = LogMel(spec).to(device)(waveform)
    if tuple(x.shape[-2:]) != tuple(grid):
        raise BenchmarkError(f"'{wav}' gives a {tuple(x.shape[-2:])} log-mel but the detector needs {tuple(grid)}")
    batch = Batch(ids=[Path(wav).stem], x=x, labels=torch.full((1,), -1, device=device), meta=[{}],
                  waveform=waveform, has_truth=torch.zeros(1, dtype=torch.bool, device=device))
    explanation = explainer.explain(detector, batch, generator=torch.Generator().manual_seed(EXPLAIN_SEED))
    try:
        check_explanation(explanation, batch, name)
    except CellFailure as exc:
        raise BenchmarkError(str(exc)) from None
    with torch.no_grad():
        score = detector.score(x)
    return ExplainedClip(batch=batch, explanation=explanation, spec=spec, score=float(score[0]),
                         p_anom=float(detector.p_from_score(score)[0]), anomalous=bool(detector.decision(score)[0]),
                         duration_s=duration_s)


def write_outputs(clip: ExplainedClip, out: Path, stem: str, title: str,
                  tf_mask: np.ndarray | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    x = clip.batch.x[0, 0].detach().float().cpu().numpy()
    attribution = clip.explanation.attribution[0].detach().float().cpu().numpy()
    paths = [explanation_figure(x, attribution, out / f"{stem}.png", title=title,
                                frames_per_second=clip.spec.frames_per_second, tf_mask=tf_mask)]
    waves = (("explanation", clip.explanation.audio), ("masked_out", clip.explanation.extra.get("audio_masked_out")))
    for tag, wave in waves:
        if wave is None:
            continue
        w = wave[0].detach().float().cpu().numpy()
        path = out / f"{stem}.{tag}.wav"
        sf.write(str(path), w / max(1.0, float(np.abs(w).max())), clip.spec.sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


@dataclass
class ExplainResult:
    """What `benchmark.explain` returns: the attribution `[F, T]` on the detector's grid, the anomaly score, the
    EER threshold it is compared with, the calibrated probability, the verdict, how the clip was fitted to the
    detector's length (None when it already fitted), whether ground truth was found, and the files written."""

    attribution: np.ndarray
    score: float
    threshold: float
    p_anomalous: float
    verdict: str
    fitted: str | None
    ground_truth: Path | None
    files: list[Path]

    def summary(self) -> str:
        lines = [f"score {self.score:.4g} vs threshold {self.threshold:.4g} (EER): {self.verdict}, "
                 f"p(anomalous) {self.p_anomalous:.2f}"]
        if self.fitted:
            lines.append(self.fitted)
        if self.ground_truth is not None:
            lines.append(f"ground truth outlined from {self.ground_truth}")
        return "\n".join(lines)


def find_ground_truth(wav: Path) -> Path | None:
    """`ground_truth/.../<stem>.npz` in a folder above the clip (the layout `data synth` writes), when exactly
    one such file names the clip."""
    for folder in Path(wav).resolve().parents:
        truth = folder / "ground_truth"
        if truth.is_dir():
            found = sorted(truth.rglob(f"{Path(wav).stem}.npz"))
            return found[0] if len(found) == 1 else None
    return None


def read_mask(path: Path, grid: tuple[int, int]) -> np.ndarray | None:
    """The clip's time-frequency mask on the detector's grid (cropped or padded like the audio), or None when
    the file does not hold one of the grid's band count."""
    try:
        with np.load(path, allow_pickle=False) as z:
            mask = np.asarray(z["tf_mask"], dtype=bool)
    except Exception as exc:  # an overlay only: say why it is missing, explain the clip anyway
        notice(f"ground truth '{path}' not outlined: cannot read its tf_mask ({type(exc).__name__})")
        return None
    if mask.ndim != 2 or mask.shape[0] != grid[0]:
        notice(f"ground truth '{path}' not outlined: its tf_mask is {list(mask.shape)}, the detector's grid has "
               f"{grid[0]} bands")
        return None
    out = np.zeros(grid, dtype=bool)
    t = min(grid[1], mask.shape[1])
    out[:, :t] = mask[:, :t]
    return out


def explain(wav: Path | str, *, detector: str, explainer: str, checkpoint: Path | str | None = None,
            suite_run: Path | str | None = None, dataset: str | None = None, out: Path | str | None = None,
            device: torch.device | str = "cpu") -> ExplainResult:
    """Explain one recording with a trained detector (a checkpoint file, or the detector of a suite run):
    attribution, score, threshold and verdict; figures (and sound, for listenable explanations) under `out`."""
    if (checkpoint is None) == (suite_run is None):
        raise BenchmarkError("give exactly one of --checkpoint FILE and --suite-run DIR to say which trained "
                             "detector to explain")
    wav = Path(wav)
    if not wav.is_file():
        raise BenchmarkError(f"audio file '{wav}' does not exist")
    device = resolve_device(device) if isinstance(device, str) else device
    train_key = None
    if suite_run is not None:
        suite_run = Path(suite_run)
        checkpoint, train_key = find_train_checkpoint(suite_run, detector, dataset)
    ckpt = load_checkpoint(Path(checkpoint), device)
    det = load_detector(ckpt, detector, device)
    spec = spec_for(ckpt)
    grid = tuple(int(v) for v in ckpt["grid"])
    ex = registry("explainer").make(explainer)
    ex.bind(spec, device)
    if ex.trains:
        ex.load_state_dict(interpreter_state(suite_run, train_key, explainer, device))
    clip = explain_clip(wav, det, ex, name=explainer, spec=spec, grid=grid, device=device)
    verdict = "anomalous" if clip.anomalous else "normal"
    fitted_s = clip_samples(spec, grid[1]) / spec.sample_rate
    fitted = None
    if abs(clip.duration_s - fitted_s) >= 1e-3:
        how = "cropped to its first" if clip.duration_s > fitted_s else "zero-padded to"
        fitted = (f"the clip is {clip.duration_s:.2f} s; {how} {fitted_s:.2f} s, the length {detector} was trained on "
                  f"({grid[1]} frames)")
    truth = find_ground_truth(wav)
    mask = read_mask(truth, grid) if truth is not None else None
    truth = truth if mask is not None else None
    length = "" if fitted is None else f" ({clip.duration_s:.2f} s fitted to {fitted_s:.2f} s)"
    title = (f"{wav.name}{length} — {explainer}\n{detector}: score {clip.score:.4g}, "
             f"p(anomalous) {clip.p_anom:.2f} ({verdict} at the EER threshold)")
    files = [] if out is None else write_outputs(clip, Path(out), safe_name(wav.stem, detector, explainer), title,
                                                 tf_mask=mask)
    return ExplainResult(attribution=clip.explanation.attribution[0].detach().float().cpu().numpy(),
                         score=clip.score, threshold=float(det.eer_threshold), p_anomalous=clip.p_anom,
                         verdict=verdict, fitted=fitted, ground_truth=truth, files=files)


def explain_file(wav: Path, *, detector: str, explainer: str, checkpoint: Path | None = None,
                 suite_run: Path | None = None, dataset: str | None = None, out: Path,
                 device: torch.device | str = "cpu") -> list[Path]:
    """Explain one recording with a trained detector; returns the files written under `out`."""
    return explain(wav, detector=detector, explainer=explainer, checkpoint=checkpoint, suite_run=suite_run,
                   dataset=dataset, out=out, device=device).files
