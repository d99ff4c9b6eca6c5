"""The saved examples of a run on the published page: `example_folders` finds the examples folders of
a run's evaluate cells, `gallery_maps` and `draw_galleries` draw the attribution galleries of each dataset ×
detector, `copy_audio` copies a few listenable explanations into the leaderboard folder (so the page works
without the store), and `gallery_blocks` / `audio_blocks` put them on the page."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import figures
from .document import Block
from .publish_cache import FigureCache
from .store import Store, atomic_write_bytes

GALLERY_CLIPS = 2
GALLERY_EXPLAINERS = 16
MAX_AUDIO_EXAMPLES = 4
AUDIO_BUDGET_BYTES = 5 * 2**20
AUDIO_TAGS = ("input", "explanation", "masked_out")


def example_folders(store: Store, manifest: dict) -> list[tuple[dict, Path]]:
    """(cell record, examples folder) of every evaluate cell of the run that saved examples, sorted."""
    out = []
    for key in manifest.get("evaluate", []):
        record = store.status(key)
        if not record or "explainer" not in record:
            continue
        folder = store.examples_dir(record.get("explain_key", key), record["dataset"], record["detector"],
                                    f"{record['explainer']}-s{record['seed']}")
        if folder.is_dir():
            out.append((record, folder))
    return sorted(out, key=lambda rf: (rf[0]["dataset"], rf[0]["detector"], rf[0]["explainer"], rf[0]["seed"]))


def gallery_maps(cells: list[tuple[dict, Path]]) -> list[figures.ExampleMap]:
    """Up to GALLERY_CLIPS clips (those most explainers saved) × GALLERY_EXPLAINERS explainers of one
    dataset × detector, from the lowest seed of each explainer."""
    first_seed: dict[str, Path] = {}
    for record, folder in cells:
        first_seed.setdefault(record["explainer"], folder)
    chosen = dict(sorted(first_seed.items())[:GALLERY_EXPLAINERS])
    counts: dict[str, int] = {}
    for folder in chosen.values():
        for path in folder.glob("*.npz"):
            counts[path.stem] = counts.get(path.stem, 0) + 1
    clips = sorted(counts, key=lambda c: (-counts[c], c))[:GALLERY_CLIPS]
    maps = []
    for clip in clips:
        for explainer, folder in chosen.items():
            path = folder / f"{clip}.npz"
            if path.is_file():
                with np.load(path) as z:
                    maps.append(figures.ExampleMap(
                        clip_id=clip.replace("__", "/"), explainer=explainer, x=z["x"].astype(np.float32),
                        attribution=z["attribution"].astype(np.float32),
                        tf_mask=z["tf_mask"].astype(bool) if "tf_mask" in z.files else None))
    return maps


@dataclass(frozen=True)
class AudioExample:
    label: str
    tracks: tuple[tuple[str, str], ...]  # (tag, path relative to the leaderboard folder)


def copy_audio(cells: list[tuple[dict, Path]], folder: Path) -> list[AudioExample]:
    """Copy one listenable explanation (with its input and masked-out audio) of up to MAX_AUDIO_EXAMPLES
    dataset × detector × explainer cells into `folder/audio/`, within AUDIO_BUDGET_BYTES: each the first
    stored clip that no earlier example played."""
    out, used, seen, heard = [], 0, set(), set()
    for record, source in cells:
        ident = (record["dataset"], record["detector"], record["explainer"])
        if ident in seen or len(out) >= MAX_AUDIO_EXAMPLES:
            continue
        clips = [p.name.removesuffix(".explanation.wav") for p in sorted(source.glob("*.explanation.wav"))]
        if not clips:
            continue
        # a clip no earlier example played, where the cell stored one: four players of one clip teach little
        clip = next((c for c in clips if (record["dataset"], c) not in heard), clips[0])
        heard.add((record["dataset"], clip))
        files = [(tag, source / f"{clip}.{tag}.wav") for tag in AUDIO_TAGS if (source / f"{clip}.{tag}.wav").is_file()]
        size = sum(p.stat().st_size for _, p in files)
        if used + size > AUDIO_BUDGET_BYTES:
            continue
        seen.add(ident)
        used += size
        stem = figures.safe_name(*ident, f"s{record['seed']}", clip)
        tracks = []
        for tag, path in files:
            rel = f"audio/{stem}.{tag}.wav"
            atomic_write_bytes(folder / rel, path.read_bytes())
            tracks.append((tag, rel))
        out.append(AudioExample(f"{' / '.join(ident)} — clip {clip.replace('__', '/')}", tuple(tracks)))
    return out


def draw_galleries(cells: list[tuple[dict, Path]], fig_dir: Path, titles: dict[tuple[str, str], str],
                   cache: FigureCache) -> list[Path]:
    """One attribution gallery per dataset × detector of `cells` in `fig_dir`, titled from `titles`."""
    galleries = []
    for dataset, detector in sorted({(r["dataset"], r["detector"]) for r, _ in cells}):
        mine = [(r, f) for r, f in cells if (r["dataset"], r["detector"]) == (dataset, detector)]
        maps = gallery_maps(mine)
        path = fig_dir / f"gallery-{figures.safe_name(dataset, detector)}.png"
        title = titles.get((dataset, detector), f"{dataset} / {detector}")
        path = cache.draw(path, (maps, title), lambda m=maps, p=path, t=title: figures.gallery(m, p, title=t))
        if path is not None:
            galleries.append(path)
    return galleries


def gallery_blocks(galleries: list[Path], rel) -> list[Block]:
    blocks = []
    if galleries:
        blocks += [Block("h2", "Gallery"),
                   Block("p", "Attributions (hot colours, each clip's map scaled so its 99.5th percentile is full "
                              "scale) over the log-mel spectrogram (grey); cyan outlines the ground-truth mask "
                              "where the dataset has one. Clips: the saved examples most explainers share, "
                              "lowest seed.")]
        blocks += [Block("img", "attribution gallery", src=rel(p)) for p in galleries]
    return blocks


def audio_blocks(audio: list[AudioExample]) -> list[Block]:
    if not audio:
        return [Block("h2", "Listen"), Block("p", "No explainer of this suite returned a listenable explanation.")]
    return [Block("h2", "Listen"),
            Block("p", "The input clip, the explainer's listenable explanation and, where given, what its mask "
                       "leaves out (copied from the run's examples).")] + \
        [Block("audio", a.label, items=list(a.tracks)) for a in audio]
