"""Reading and writing the files of datasets on disk: wav audio, `.pt` log-mel tensors, ground-truth `.npz`
and CSV tables. Readers validate what they read and raise a one-line `DataError` naming the file and the
problem; writers are byte-deterministic (no timestamps), so the same synthetic seed writes identical files.
"""
from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from benchmark.dataset import notice
from benchmark.errors import DataError
from benchmark.types import Event

PCM_SCALE = 32768.0  # soundfile reads 16-bit PCM as int / 2**15
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class Notices:
    """Notices said once per (kind, detail) for one dataset object, not once per file."""

    def __init__(self) -> None:
        self._said: set[tuple[str, str]] = set()

    def once(self, kind: str, detail: str, message: str) -> None:
        if (kind, detail) not in self._said:
            self._said.add((kind, detail))
            notice(message)


# ---------------------------------------------------------------------------------------------- audio
def write_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono wav of `pcm: [N]` int16."""
    sf.write(str(path), pcm.astype(np.int16, copy=False), sample_rate, subtype="PCM_16", format="WAV")


def audio_frames(path: Path) -> tuple[int, int]:
    """(frames, sample rate) from the header, without reading the samples."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for corrupt headers
        raise DataError(f"{path}: cannot read audio ({_one_line(exc)}); replace or remove the file") from None
    return info.frames, info.samplerate


def read_wav(path: Path, sample_rate: int, min_samples: int, notices: Notices) -> torch.Tensor:
    """A validated mono waveform `[N]` float32 at `sample_rate`: stereo is downmixed and other rates are
    resampled (each with a notice); unreadable, empty, NaN/Inf, silent or too short audio raises DataError."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot read audio ({_one_line(exc)}); replace or remove the file") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: empty audio (0 samples); replace or remove the file")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: audio contains NaN or Inf samples; replace or remove the file")
    if not np.any(data):
        raise DataError(f"{path}: audio is silent (all samples are zero); replace or remove the file")
    wave = torch.from_numpy(data.T.copy())
    if wave.shape[0] > 1:
        notices.once("downmix", str(wave.shape[0]), f"{path}: {wave.shape[0]} channels downmixed to mono "
                                                     "(and so is every other multi-channel file)")
        wave = wave.mean(dim=0, keepdim=True)
    if rate != sample_rate:
        notices.once("resample", str(rate), f"{path}: {rate} Hz resampled to {sample_rate} Hz "
                                            f"(and so is every other {rate} Hz file)")
        wave = torchaudio.functional.resample(wave, rate, sample_rate)
    if wave.shape[1] < min_samples:
        raise DataError(f"{path}: audio is shorter than one frame ({wave.shape[1]} samples at {sample_rate} Hz, "
                        f"need {min_samples}); replace or remove the file")
    return wave[0]


# ---------------------------------------------------------------------------------------------- features
def write_features(path: Path, x: torch.Tensor) -> None:
    """`x: [F, T]` float32 saved like the planer release; through a buffer so the bytes never depend on
    the file name."""
    buffer = io.BytesIO()
    torch.save(x.detach().to("cpu", torch.float32).contiguous().clone(), buffer)
    path.write_bytes(buffer.getvalue())


def read_features(path: Path, n_mels: int) -> torch.Tensor:
    """A validated log-mel tensor `[F, T]` float32 (a leading singleton axis is dropped)."""
    try:
        x = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot read tensor ({_one_line(exc)}); replace or remove the file") from None
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{path}: holds a {type(x).__name__}, not a log-mel tensor [{n_mels}, T]")
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2 or x.shape[0] != n_mels:
        raise DataError(f"{path}: tensor has shape {list(x.shape)}, expected [{n_mels}, T] log-mel features")
    if x.shape[1] < 1:
        raise DataError(f"{path}: features are shorter than one frame (0 frames); replace or remove the file")
    x = x.float()
    if not torch.isfinite(x).all():
        raise DataError(f"{path}: features contain NaN or Inf; replace or remove the file")
    if x.max() == x.min():
        raise DataError(f"{path}: features are constant (silent recording); replace or remove the file")
    return x


# ---------------------------------------------------------------------------------------------- ground truth
def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like `np.savez_compressed`, but every zip entry carries a fixed date, so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(array), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, payload.getvalue())


def write_truth(path: Path, tf_mask: np.ndarray, events: Sequence[Event]) -> None:
    """`tf_mask: [F, T]` bool, events as `[K, 4]` (onset, offset, f_lo, f_hi; NaN = no band) and kinds `[K]`."""
    table = np.array([[e.onset_s, e.offset_s, math.nan if e.f_lo_hz is None else e.f_lo_hz,
                       math.nan if e.f_hi_hz is None else e.f_hi_hz] for e in events], dtype=np.float64)
    write_npz(path, {"tf_mask": tf_mask.astype(bool), "events": table.reshape(-1, 4),
                     "kinds": np.array([e.kind for e in events], dtype=np.str_)})


def read_truth(path: Path, n_mels: int, duration_s: float) -> tuple[torch.Tensor, tuple[Event, ...]]:
    """(tf_mask `[F, T]` bool, events) from a ground-truth npz, validated against the clip."""
    try:
        with np.load(path, allow_pickle=False) as z:
            mask, table, kinds = z["tf_mask"], z["events"], z["kinds"]
    except Exception as exc:
        raise DataError(f"{path}: cannot read ground truth ({_one_line(exc)}); it needs arrays tf_mask [F, T], "
                        "events [K, 4] and kinds [K]") from None
    if mask.ndim != 2 or mask.shape[0] != n_mels:
        raise DataError(f"{path}: tf_mask has shape {list(mask.shape)}, expected [{n_mels}, T]")
    if table.ndim != 2 or table.shape[1] != 4 or kinds.shape != (table.shape[0],):
        raise DataError(f"{path}: events must be [K, 4] with K kinds, got {list(table.shape)} and {list(kinds.shape)}")
    events = []
    for (onset, offset, f_lo, f_hi), kind in zip(table.tolist(), kinds.tolist(), strict=True):
        check_interval(path, onset, offset, duration_s)
        band = (None, None) if math.isnan(f_lo) or math.isnan(f_hi) else (f_lo, f_hi)
        events.append(Event(onset, offset, band[0], band[1], str(kind)))
    return torch.from_numpy(mask.astype(bool)), tuple(events)


def check_interval(where: object, onset_s: float, offset_s: float, duration_s: float) -> None:
    """An annotated interval must be finite, non-empty and inside the clip (a 1-ms tolerance)."""
    if not (math.isfinite(onset_s) and math.isfinite(offset_s)) or offset_s <= onset_s:
        raise DataError(f"{where}: malformed annotation [{onset_s}, {offset_s}) s: need onset < offset")
    if onset_s < -1e-3 or offset_s > duration_s + 1e-3:
        raise DataError(f"{where}: annotation [{onset_s}, {offset_s}) s is outside the clip [0, {duration_s:g}) s")


# ---------------------------------------------------------------------------------------------- tables
def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number, row)]) of a CSV file; unreadable or ragged files raise DataError."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = []
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{path}:{reader.line_num}: malformed row (wrong number of fields)")
                rows.append((reader.line_num, {k.strip(): v.strip() for k, v in row.items()}))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({_one_line(exc)})") from None
    return header, rows


def fmt(x: float | None, digits: int = 3) -> str:
    """A float as written in CSV tables: fixed digits, no trailing zeros, empty for None."""
    if x is None:
        return ""
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
