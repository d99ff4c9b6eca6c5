"""DCASE task 2 from disk (DESIGN §4.2): the 2020, 2021 and 2022-2024 layouts and file names, `dev_data`
and `eval_data`, attributes from names and `attributes_*.csv`, unlabelled evaluation files, and
`ground_truth/<clip id>.npz` when present (synthetic sets written by `data synth` carry it)."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError, DataError
from benchmark.features import preset
from benchmark.registry import datasets
from benchmark.types import Clip

from ._audio_io import Notices, audio_frames, read_csv, read_truth, read_wav

# 2021+: section_00_source_test_anomaly_0001[_attrs].wav; 2020: anomaly_id_00_00000000.wav
LABELLED = (
    re.compile(r"section_(?P<section>\d\d)_(?P<domain>source|target)_(?P<split>train|test)_"
               r"(?P<label>normal|anomaly)_(?P<index>\d{4})(?P<attrs>_.*)?\.wav"),
    re.compile(r"(?P<label>normal|anomaly)_id_(?P<section>\d\d)_(?P<index>\d{8})\.wav"),
)
# evaluation sets before their labels were published: section_03_test_0000.wav, section_03_0000.wav,
# section_03_source_test_0000.wav (2021), id_01_00000000.wav (2020)
UNLABELLED = (
    re.compile(r"section_(?P<section>\d\d)_(?:(?P<domain>source|target)_)?(?:test_)?(?P<index>\d{4})"
               r"(?P<attrs>_.*)?\.wav"),
    re.compile(r"id_(?P<section>\d\d)_(?P<index>\d{8})\.wav"),
)
SPLIT_FOLDERS = {"train": "train", "test": "test", "source_test": "test", "target_test": "test"}
PARTS = {"dev": ("dev_data",), "eval": ("eval_data",), "all": ("dev_data", "eval_data")}
ID_PREFIX = {"dev_data": "", "eval_data": "eval/"}
HINT = ("download DCASE task 2 (dev_data, optionally eval_data) or write a synthetic set with "
        "`python -m benchmark data synth synthetic-machines --out DIR`, and point --data-root at the folder "
        "that holds dev_data/")


@dataclass(frozen=True)
class AudioFile:
    path: Path
    id: str
    split: str
    label: int | None
    machine: str
    section: str
    domain: str
    attributes: dict[str, str] = field(hash=False)


def parse_name(path: Path, folder_split: str) -> tuple[int | None, str, str, dict[str, str]]:
    """(label, section, domain, attributes) from a DCASE file name; an unknown name raises DataError."""
    for pattern in LABELLED:
        m = pattern.fullmatch(path.name)
        if m:
            found = m.groupdict()
            if found.get("split") and found["split"] != folder_split:
                raise DataError(f"{path}: a {found['split']} file in a {folder_split} folder; move it or fix its name")
            return (int(found["label"] == "anomaly"), found["section"], found.get("domain") or "source",
                    _name_attributes(found.get("attrs")))
    for pattern in UNLABELLED:
        m = pattern.fullmatch(path.name)
        if m and folder_split == "test":
            found = m.groupdict()
            return None, found["section"], found.get("domain") or "unknown", _name_attributes(found.get("attrs"))
    raise DataError(f"{path}: name follows no DCASE layout (2020 normal_id_00_00000000.wav, 2021+ "
                    "section_00_source_test_normal_0000.wav, eval section_03_test_0000.wav)")


def _name_attributes(suffix: str | None) -> dict[str, str]:
    """`_vel_6_loc_A` -> {"vel": "6", "loc": "A"}; an odd count keeps the raw suffix."""
    if not suffix:
        return {}
    words = suffix.lstrip("_").split("_")
    if len(words) % 2:
        return {"attrs": suffix.lstrip("_")}
    return dict(zip(words[::2], words[1::2], strict=True))


def _csv_attributes(machine_dir: Path) -> dict[str, dict[str, str]]:
    """file name -> attributes from `attributes_*.csv` (columns file_name, d1p, d1v, d2p, d2v, ...)."""
    out: dict[str, dict[str, str]] = {}
    for table in sorted(machine_dir.glob("attributes_*.csv")):
        header, rows = read_csv(table)
        if "file_name" not in header:
            raise DataError(f"{table}: attributes table needs a file_name column (and d1p, d1v, ... pairs)")
        names = sorted(h for h in header if re.fullmatch(r"d\d+p", h))
        for _, row in rows:
            out[Path(row["file_name"]).name] = {row[p]: row.get(p[:-1] + "v", "") for p in names if row[p]}
    return out


@datasets.register(
    "dcase",
    summary="DCASE task 2 from disk: 2020/2021/2022-2024 layouts, dev_data and eval_data, attributes; "
            "ground_truth/*.npz when present",
    version=1,
    capabilities={"waveform", "intervals", "tf_mask"},
)
class DCASE(Dataset):
    """Clips of `<data_root>/{dev_data,eval_data}/<machine>/{train,test,source_test,target_test}/*.wav`.

    part: "dev", "eval" or "all"; machines: a subset of the machine types; duration_s: the grid's clip
    length (default: the most common length on disk). Clip ids are `<machine>/<file stem>`, prefixed
    `eval/` for eval_data.
    """

    def __init__(self, data_root: str, part: str = "dev", machines: list[str] | None = None,
                 duration_s: float | None = None):
        self.root = Path(data_root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data root {self.root} does not exist: {HINT}")
        if part not in PARTS:
            raise BenchmarkError(f"dcase part must be one of {', '.join(PARTS)}; got {part!r}")
        present = [p for p in PARTS[part] if (self.root / p).is_dir()]
        if not present:
            raise DataError(f"data root {self.root} has no {' or '.join(PARTS[part])}/ (unknown layout): {HINT}")
        self.notices = Notices()
        self.files = [f for p in present for f in self._index(self.root / p, machines)]
        if not self.files:
            raise DataError(f"data root {self.root} has no wav files under {', '.join(present)}: {HINT}")
        unlabelled = sum(f.label is None for f in self.files)
        if unlabelled:
            self.notices.once("unlabelled", "", f"{unlabelled} evaluation files in {self.root} have no labels: "
                                                "loaded with label None and left out of labelled metrics")
        lengths = Counter()
        for f in self.files:
            frames, rate = audio_frames(f.path)
            lengths[round(frames / rate, 2)] += 1
        base = preset("dcase")
        self.spec = base.with_duration(duration_s or lengths.most_common(1)[0][0])
        self.truth_dir = self.root / "ground_truth"
        if self.truth_dir.is_dir() and any(self.truth_dir.rglob("*.npz")):
            self.truth = frozenset({"intervals", "tf_mask"})
            missing = [f for f in self.files if f.split == "test" and f.label is not None
                       and not self._truth_path(f).is_file()]
            if missing:
                raise DataError(f"{self._truth_path(missing[0])}: ground truth missing for {len(missing)} labelled "
                                f"test clips (e.g. {missing[0].path}); restore the ground_truth/ folder or remove it")

    def _index(self, part_dir: Path, machines: list[str] | None) -> list[AudioFile]:
        files = []
        machine_dirs = sorted(d for d in part_dir.iterdir() if d.is_dir())
        if machines:
            unknown = sorted(set(machines) - {d.name for d in machine_dirs})
            if unknown:
                raise DataError(f"{part_dir} has no machine type {', '.join(unknown)}; it has "
                                f"{', '.join(d.name for d in machine_dirs)}")
            machine_dirs = [d for d in machine_dirs if d.name in machines]
        for machine_dir in machine_dirs:
            split_dirs = sorted(d for d in machine_dir.iterdir() if d.is_dir() and d.name in SPLIT_FOLDERS)
            if not split_dirs:
                raise DataError(f"{machine_dir}: unknown layout, no train/ or test/ (or source_test/, target_test/) "
                                "folder; point --data-root at the folder that holds dev_data/")
            attributes = _csv_attributes(machine_dir)
            for split_dir in split_dirs:
                split = SPLIT_FOLDERS[split_dir.name]
                for path in sorted(split_dir.glob("*.wav")):
                    label, section, domain, attrs = parse_name(path, split)
                    if label is not None and split == "train" and label == 1:
                        raise DataError(f"{path}: an anomalous clip in a training folder; DCASE training data is "
                                        "normal only")
                    files.append(AudioFile(path, f"{ID_PREFIX[part_dir.name]}{machine_dir.name}/{path.stem}", split,
                                           label, machine_dir.name, section, domain,
                                           {**attrs, **attributes.get(path.name, {})}))
        return files

    def _truth_path(self, f: AudioFile) -> Path:
        return self.truth_dir / f"{f.id}.npz"

    def clips(self, split: str) -> Iterator[Clip]:
        self.check_split(split)
        spec = self.spec
        for f in self.files:
            if f.split != split:
                continue
            wave = read_wav(f.path, spec.sample_rate, spec.win_length, self.notices)
            mask, events = None, ()
            if self.truth and (f.split == "test" and f.label is not None or self._truth_path(f).is_file()):
                mask, events = read_truth(self._truth_path(f), spec.n_bins, wave.shape[0] / spec.sample_rate)
                if f.label == 0 and (events or mask.any()):
                    raise DataError(f"{self._truth_path(f)}: a normal clip with anomaly ground truth; "
                                    "regenerate ground_truth/")
            yield Clip(f.id, split, f.label, spec.sample_rate, waveform=wave,
                       meta={"machine": f.machine, "section": f.section, "domain": f.domain,
                             "attributes": dict(f.attributes)},
                       events=events, tf_mask=mask)

    def describe(self) -> dict:
        return {**super().describe(), "root": str(self.root), "files": len(self.files)}
