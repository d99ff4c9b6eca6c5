"""The embedded synthetic datasets (DESIGN §4.1): `synthetic-machines` (DCASE-like, dcase grid) and
`synthetic-planer` (wood-planer-like, planer grid), deterministic from a seed and a recipe in
`tasks/datasets/`, with exact ground truth (masks, intervals and the anomaly waveform)."""
from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np

from benchmark.errors import DataError
from benchmark.needs import Need
from benchmark.registry import datasets
from benchmark.types import Event

from ._sound_models import MACHINES, MachineSound, RenderContext, background, planer
from ._synthesis import ClipPlan, SyntheticDataset, clip_rng, draw_parameters, recipe_value

_TRUTH = {Need.INTERVALS, Need.TF_MASK, Need.AUDIO, Need.WAVEFORM}


@datasets.register(
    "synthetic-machines",
    summary="DCASE-like machines (fan, pump, gearbox, valve, slider) with six anomaly families and exact "
            "ground truth, 16 kHz dcase grid",
    version=1,
    capabilities=_TRUTH,
    test_params={"size": "tiny"},
    layout="dcase",
)
class SyntheticMachines(SyntheticDataset):
    """Machine types x sections (parameter settings) x source/target domains; few target training clips.

    Size fields: machines, sections, duration_s, train_source, train_target (per section), test_normal,
    test_anomaly (per section and domain). Clip ids follow DCASE 2022+ names:
    `fan/section_00_source_test_anomaly_0003`.
    """

    recipe_name = "synthetic-machines"
    layouts = ("dcase",)

    def __init__(self, seed: int = 0, size: str = "quick", difficulty: float | None = None,
                 recipe: str | None = None, **overrides: Any):
        super().__init__(seed, size, difficulty, recipe, **overrides)

    def _plan(self) -> list[ClipPlan]:
        size = self.size
        unknown = sorted(set(size["machines"]) - set(MACHINES))
        if unknown:
            raise DataError(f"{self.recipe_file}: unknown machine type(s) {', '.join(unknown)}; "
                            f"types: {', '.join(MACHINES)}")
        plans = []
        for machine in size["machines"]:
            recipe_value(self.recipe, self.recipe_file, "machines", machine)
            for section in range(int(size["sections"])):
                groups = [("train", "source", 0, size["train_source"]), ("train", "target", 0, size["train_target"]),
                          ("test", "source", 0, size["test_normal"]), ("test", "source", 1, size["test_anomaly"]),
                          ("test", "target", 0, size["test_normal"]), ("test", "target", 1, size["test_anomaly"])]
                for split, domain, label, count in groups:
                    attributes = self._attributes(domain)
                    for index in range(int(count)):
                        stem = f"section_{section:02d}_{domain}_{split}_{('normal', 'anomaly')[label]}_{index:04d}"
                        plans.append(ClipPlan(f"{machine}/{stem}", split, label, machine, section, domain, index,
                                              attributes))
        return plans

    def _attributes(self, domain: str) -> dict[str, str]:
        setting = recipe_value(self.recipe, self.recipe_file, "domains", domain)
        return {"speed": f"{float(setting['speed']):.2f}", "noise": str(setting["background"])}

    @cached_property
    def _sections(self) -> dict[tuple[str, int], dict[str, float]]:
        """Each (machine, section)'s parameter setting, keyed by the seed only."""
        return {(m, s): draw_parameters(self.recipe["machines"][m], clip_rng(self.seed, "section", m, s))
                for m in self.size["machines"] for s in range(int(self.size["sections"]))}

    def _machine(self, plan: ClipPlan, rng: np.random.Generator) -> MachineSound:
        domain = self.recipe["domains"][plan.domain]
        speed = float(domain["speed"]) * (1.0 + float(self.recipe["speed_jitter"]) * rng.standard_normal())
        ctx = RenderContext(self.spec.n_samples, self.spec.sample_rate, speed)
        return MACHINES[plan.machine](self._sections[(plan.machine, plan.section)], ctx, rng)

    def _background(self, plan: ClipPlan, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        domain = self.recipe["domains"][plan.domain]
        return _background(self, rng, str(domain["background"])), float(domain["snr_db"])

    def _event_families(self, plan: ClipPlan, rng: np.random.Generator) -> list[str]:
        families = self._anomalies["families"]
        return [families[int(rng.integers(len(families)))]]

    def _annotate(self, plan: ClipPlan, onset_s: float, offset_s: float, f_lo_hz: float, f_hi_hz: float,
                  families: list[str]) -> Event:
        return Event(onset_s, offset_s, round(f_lo_hz, 1), round(f_hi_hz, 1), families[0])


@datasets.register(
    "synthetic-planer",
    summary="wood-planer-like recordings (cutter head, board passes, dust extraction) with board_stuck, "
            "broken_board and uneven_thick_wood anomalies, whole-second annotations, 20 kHz planer grid",
    version=1,
    capabilities=_TRUTH,
    test_params={"size": "tiny"},
    layout="planer",
)
class SyntheticPlaner(SyntheticDataset):
    """One planer; training clips in board-size groups (and start/stop ramps), test clips taken while
    boards are planed, normal or one of three anomaly classes. Clip ids follow the public release:
    `evaluation/anomalies/board_stuck/<stem>`.

    Size fields: duration_s, train, test_normal, test_anomaly.
    """

    recipe_name = "synthetic-planer"
    layouts = ("planer",)
    chunks_per_recording = 6

    def __init__(self, seed: int = 0, size: str = "quick", difficulty: float | None = None,
                 recipe: str | None = None, **overrides: Any):
        super().__init__(seed, size, difficulty, recipe, **overrides)

    def _plan(self) -> list[ClipPlan]:
        groups = recipe_value(self.recipe, self.recipe_file, "groups")
        kinds = recipe_value(self.recipe, self.recipe_file, "anomalies", "kinds")
        names = list(groups)
        weights = [float(groups[g]["weight"]) for g in names]
        folders = [f"training/{g}" for g in names] + ["evaluation/normal"]
        folders += [f"evaluation/anomalies/{k}" for k in kinds]
        plans = []
        for index, group in enumerate(_allocate(names, weights, int(self.size["train"]))):
            plans.append(self._plan_one(folders, f"training/{group}", "train", 0, index, group, None, {"group": group}))
        # test clips, normal and anomalous alike, are taken while boards are planed (no start/stop ramps)
        boards = [(g, w) for g, w in zip(names, weights, strict=True) if not groups[g].get("start_stop")]
        board_names, board_weights = [g for g, _ in boards], [w for _, w in boards]
        for index, group in enumerate(_allocate(board_names, board_weights, int(self.size["test_normal"]))):
            plans.append(self._plan_one(folders, "evaluation/normal", "test", 0, index, group, None, {}))
        kind_names = list(kinds)
        for index, group in enumerate(_allocate(board_names, board_weights, int(self.size["test_anomaly"]))):
            kind = kind_names[index % len(kind_names)]
            plans.append(self._plan_one(folders, f"evaluation/anomalies/{kind}", "test", 1, index, group, kind,
                                        {"kind": kind}))
        return plans

    def _plan_one(self, folders: list[str], folder: str, split: str, label: int, index: int, group: str,
                  kind: str | None, attributes: dict[str, str]) -> ClipPlan:
        recording, chunk = divmod(index, self.chunks_per_recording)
        stem = f"{self.recording_name(folders.index(folder) + 1, recording)}_{chunk + 1}"
        return ClipPlan(f"{folder}/{stem}", split, label, "planer", 0, "source", index, attributes, group, kind)

    @staticmethod
    def recording_name(folder_code: int, recording: int) -> str:
        """`planer_YY-MM-DD_HHMM_m1` like the release (its chunk number follows as `_<k>`)."""
        day, minute = 1 + recording // 720, recording % 720
        return f"planer_24-{folder_code:02d}-{day:02d}_{8 + minute // 60:02d}{minute % 60:02d}_m1"

    @cached_property
    def _setting(self) -> dict[str, float]:
        return draw_parameters(recipe_value(self.recipe, self.recipe_file, "machine"),
                               clip_rng(self.seed, "section", "planer", 0))

    def _machine(self, plan: ClipPlan, rng: np.random.Generator) -> MachineSound:
        speed = 1.0 + float(self.recipe["speed_jitter"]) * rng.standard_normal()
        ctx = RenderContext(self.spec.n_samples, self.spec.sample_rate, speed)
        return planer(self._setting, self.recipe["groups"][plan.group], ctx, rng)

    def _background(self, plan: ClipPlan, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        domain = self.recipe["domains"][plan.domain]
        return _background(self, rng, str(domain["background"])), float(domain["snr_db"])

    def _event_families(self, plan: ClipPlan, rng: np.random.Generator) -> list[str]:
        return list(self._anomalies["kinds"][plan.kind])

    def _annotate(self, plan: ClipPlan, onset_s: float, offset_s: float, f_lo_hz: float, f_hi_hz: float,
                  families: list[str]) -> Event:
        """Whole seconds around the event, like the human annotations of the real set; no band."""
        duration = self.spec.duration_s
        return Event(float(math.floor(onset_s)), float(min(math.ceil(offset_s), duration)), None, None, plan.kind)


def _background(ds: SyntheticDataset, rng: np.random.Generator, name: str) -> np.ndarray:
    setting = recipe_value(ds.recipe, ds.recipe_file, "backgrounds", name)
    return background(rng, ds.spec.n_samples, ds.spec.sample_rate, setting["knots_hz"], setting["gains_db"],
                      setting.get("hum_db"))


def _allocate(names: list[str], weights: list[float], count: int) -> list[str]:
    """`count` labels spread over `names` in proportion to `weights` (largest remainder), interleaved."""
    share = np.asarray(weights, dtype=float) / sum(weights) * count
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: count - counts.sum()]:
        counts[i] += 1
    order = sorted(((k + 0.5) / c, i) for i, c in enumerate(counts) for k in range(c))
    return [names[i] for _, i in order]

