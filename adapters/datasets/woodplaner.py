"""The wood-planer set from disk (DESIGN §4.3): precomputed 80x401 log-mel tensors (`.pt`, the public
release) and/or wav files in `training/<group>/`, `evaluation/normal/`, `evaluation/anomalies/<kind>/`,
human annotations from a CSV (file, 10-s chunk, kind, whole-second intervals), and
`ground_truth/<clip id>.npz` masks when present (synthetic sets written by `data synth`)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.dataset import Dataset
from benchmark.errors import DataError
from benchmark.features import preset
from benchmark.registry import datasets
from benchmark.types import Clip, Event

from ._audio_io import Notices, audio_frames, check_interval, read_csv, read_features, read_truth, read_wav

SUFFIXES = (".pt", ".wav")
ANNOTATION_COLUMNS = ("file", "chunk", "onset_s", "offset_s")
HINT = ("get the public wood-planer release (training/, evaluation/ and its annotation CSV) or write a synthetic "
        "set with `python -m benchmark data synth synthetic-planer --out DIR --layout planer`, and point "
        "--data-root at the folder that holds training/ and evaluation/")


@dataclass
class PlanerFile:
    """One clip: its id (relative path without suffix) and the files that hold it."""

    id: str
    split: str
    label: int
    attributes: dict[str, str]
    sources: dict[str, Path] = field(default_factory=dict)  # suffix -> path

    @property
    def stem(self) -> str:
        return self.id.rsplit("/", 1)[-1]


@datasets.register(
    "woodplaner",
    summary="wood-planer release from disk: 80x401 .pt log-mel tensors and/or wav, whole-second annotations; "
            "ground_truth/*.npz when present",
    version=1,
    capabilities={"waveform", "intervals", "tf_mask"},
)
class WoodPlaner(Dataset):
    """Clips of `<data_root>/training/<group>/`, `evaluation/normal/` and `evaluation/anomalies/<kind>/`.

    annotations: the annotation CSV (default: `<data_root>/annotations.csv`, else the one CSV in the root
    with file and chunk columns). Clip ids are the relative paths without suffix, e.g.
    `evaluation/anomalies/board_stuck/planer_24-06-01_0800_m1_3`.
    """

    def __init__(self, data_root: str, annotations: str | None = None):
        self.root = Path(data_root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data root {self.root} does not exist: {HINT}")
        if not (self.root / "training").is_dir() and not (self.root / "evaluation").is_dir():
            raise DataError(f"data root {self.root} has neither training/ nor evaluation/ (unknown layout): {HINT}")
        self.notices = Notices()
        self.files = self._index()
        if not self.files:
            raise DataError(f"data root {self.root} has no .pt or .wav files under training/ or evaluation/: {HINT}")
        self.has_waveforms = all(".wav" in f.sources for f in self.files)
        if not self.has_waveforms and any(".wav" in f.sources for f in self.files):
            self.notices.once("features", "", f"{self.root}: some clips have only .pt features, so the set is "
                                              "treated as features-only (waveform explainers are skipped)")
        self.spec = preset("planer").with_duration(self._duration(self.files[0]))
        truth = set()
        self.events: dict[str, tuple[Event, ...]] = {}
        table = self._annotation_table(annotations)
        if table is not None:
            self.events = self._read_annotations(table)
            truth.add("intervals")
        else:
            self.notices.once("annotations", "", f"{self.root}: no annotation CSV, so no time ground truth")
        self.truth_dir = self.root / "ground_truth"
        if self.truth_dir.is_dir() and any(self.truth_dir.rglob("*.npz")):
            truth.add("tf_mask")
        self.truth = frozenset(truth)

    # ----------------------------------------------------------------------------------- indexing
    def _index(self) -> list[PlanerFile]:
        folders: list[tuple[Path, str, int, dict[str, str]]] = []
        training, evaluation = self.root / "training", self.root / "evaluation"
        if training.is_dir():
            folders += [(d, "train", 0, {"group": d.name}) for d in sorted(training.iterdir()) if d.is_dir()]
            self._no_loose_files(training)
        if evaluation.is_dir():
            self._no_loose_files(evaluation)
            for d in sorted(evaluation.iterdir()):
                if d.is_dir() and d.name not in ("normal", "anomalies"):
                    raise DataError(f"{d}: unknown layout, evaluation/ holds normal/ and anomalies/<kind>/ only")
            if (evaluation / "normal").is_dir():
                folders.append((evaluation / "normal", "test", 0, {}))
            anomalies = evaluation / "anomalies"
            if anomalies.is_dir():
                self._no_loose_files(anomalies)
                folders += [(d, "test", 1, {"kind": d.name}) for d in sorted(anomalies.iterdir()) if d.is_dir()]
        files: dict[str, PlanerFile] = {}
        for folder, split, label, attributes in folders:
            for path in sorted(folder.iterdir()):
                if path.is_dir():
                    raise DataError(f"{path}: unknown layout, no folders expected inside {folder}")
                if path.suffix not in SUFFIXES:
                    continue
                clip_id = path.relative_to(self.root).with_suffix("").as_posix()
                entry = files.setdefault(clip_id, PlanerFile(clip_id, split, label, attributes))
                entry.sources[path.suffix] = path
        return list(files.values())

    @staticmethod
    def _no_loose_files(folder: Path) -> None:
        loose = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if loose:
            raise DataError(f"{loose[0]}: unknown layout, clips belong in a subfolder of {folder}")

    def _duration(self, f: PlanerFile) -> float:
        """The clip length on the grid, from the first clip (frames of its tensor or samples of its wav)."""
        spec = preset("planer")
        if ".wav" in f.sources:
            frames, rate = audio_frames(f.sources[".wav"])
            return round(frames / rate, 2)
        x = read_features(f.sources[".pt"], spec.n_bins)
        return (x.shape[1] - 1) * spec.hop_length / spec.sample_rate

    # ----------------------------------------------------------------------------------- annotations
    def _annotation_table(self, annotations: str | None) -> Path | None:
        if annotations:
            path = Path(annotations).expanduser()
            if not path.is_file():
                raise DataError(f"annotation CSV {path} not found; pass the release's annotation file")
            return path
        if (self.root / "annotations.csv").is_file():
            return self.root / "annotations.csv"
        candidates = [p for p in sorted(self.root.glob("*.csv"))
                      if {"file", "chunk"} <= set(read_csv(p)[0])]
        if len(candidates) > 1:
            raise DataError(f"{self.root}: several annotation CSVs ({', '.join(p.name for p in candidates)}); "
                            "pass annotations=PATH")
        return candidates[0] if candidates else None

    def _read_annotations(self, table: Path) -> dict[str, tuple[Event, ...]]:
        """clip id -> events; every row must name an evaluation clip and lie inside it."""
        header, rows = read_csv(table)
        missing = [c for c in ANNOTATION_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{table}: malformed annotation table, missing column(s) {', '.join(missing)} "
                            f"(need {', '.join(ANNOTATION_COLUMNS)}, optionally kind)")
        by_stem: dict[str, PlanerFile] = {}
        for f in self.files:
            if f.split == "test":
                if f.stem in by_stem:
                    raise DataError(f"{f.id}: the file name {f.stem} appears twice under evaluation/, so "
                                    "annotations would be ambiguous")
                by_stem[f.stem] = f
        events: dict[str, list[Event]] = defaultdict(list)
        for line, row in rows:
            where = f"{table}:{line}"
            try:
                onset, offset = float(row["onset_s"]), float(row["offset_s"])
                chunk = int(row["chunk"])
            except ValueError:
                raise DataError(f"{where}: malformed annotation (chunk must be an integer, onset_s and offset_s "
                                f"numbers; got {row['chunk']!r}, {row['onset_s']!r}, {row['offset_s']!r})") from None
            name = Path(row["file"]).stem
            target = by_stem.get(f"{name}_{chunk}") or by_stem.get(name)
            if target is None:
                raise DataError(f"{where}: annotation names {row['file']!r} chunk {chunk}, which is not under "
                                "evaluation/; fix the row or restore the file")
            check_interval(where, onset, offset, self.spec.duration_s)
            events[target.id].append(Event(onset, offset, None, None, row.get("kind") or target.attributes.get(
                "kind", "anomaly")))
        return {k: tuple(sorted(v, key=lambda e: (e.onset_s, e.offset_s))) for k, v in events.items()}

    # ----------------------------------------------------------------------------------- streaming
    def clips(self, split: str) -> Iterator[Clip]:
        self.check_split(split)
        spec = self.spec
        for f in self.files:
            if f.split != split:
                continue
            features = read_features(f.sources[".pt"], spec.n_bins) if ".pt" in f.sources else None
            wave = read_wav(f.sources[".wav"], spec.sample_rate, spec.win_length, self.notices) \
                if ".wav" in f.sources else None
            events = self.events.get(f.id, ())
            if f.label == 0 and events:
                raise DataError(f"{f.id}: a normal clip has annotations; fix the annotation CSV")
            mask = self._mask(f)
            yield Clip(f.id, split, f.label, spec.sample_rate, waveform=wave if self.has_waveforms else None,
                       features=features, meta={"machine": "planer", "section": "00", "domain": "source",
                                                "attributes": dict(f.attributes)},
                       events=events, tf_mask=mask)

    def _mask(self, f: PlanerFile) -> torch.Tensor | None:
        path = self.truth_dir / f"{f.id}.npz"
        if "tf_mask" not in self.truth or not path.is_file():
            return None
        mask, _ = read_truth(path, self.spec.n_bins, self.spec.duration_s)
        if f.label == 0 and mask.any():
            raise DataError(f"{path}: a normal clip with anomaly ground truth; regenerate ground_truth/")
        return mask

    def describe(self) -> dict:
        return {**super().describe(), "root": str(self.root), "files": len(self.files)}
