"""Small plugins for the engine's own tests: a fast feature-only dataset, a deliberately broken
detector and explainer, and a simple metric. Registered under names starting with 'test-'."""
from __future__ import annotations

import time

import torch

from benchmark.dataset import Dataset
from benchmark.detector import Detector
from benchmark.explainer import Explainer
from benchmark.features import preset
from benchmark.metrics.context import MetricContext, MetricResult
from benchmark.registry import datasets, detectors, explainers, metrics
from benchmark.types import Clip, Event, Explanation

SPEC = preset("dcase").with_duration(1.0)  # 128 x 32


@datasets.register("test-blobs", summary="engine tests: smooth noise, anomalies = a bright band", version=1,
                   capabilities={"intervals", "tf_mask"})
class Blobs(Dataset):
    truth = frozenset({"intervals", "tf_mask"})
    has_waveforms = False

    def __init__(self, n_train: int = 24, n_test: int = 8, seed: int = 0):
        self.spec = SPEC
        self.n_train, self.n_test, self.seed = n_train, n_test, seed

    def clips(self, split: str):
        n = self.n_train if split == "train" else self.n_test
        g = torch.Generator().manual_seed(self.seed * 1000 + (split == "test"))
        f, t = SPEC.grid
        for i in range(n):
            x = torch.randn(f, t, generator=g) * 0.1 - 40.0
            label = int(split == "test" and i % 2 == 1)
            events: tuple[Event, ...] = ()
            if label:
                x[40:50, 10:20] += 8.0
                events = (Event(10 / SPEC.frames_per_second, 20 / SPEC.frames_per_second, None, None, "band"),)
            yield Clip(id=f"m/{split}_{i:03d}", split=split, label=label, sample_rate=SPEC.sample_rate,
                       features=x, meta={"machine": "m", "section": "00", "domain": "source"}, events=events)


@detectors.register("test-template", summary="engine tests: squared deviation from the mean normal", version=1,
                    capabilities={"reconstructs"})
class Template(Detector):
    def __init__(self, fail_fit: bool = False, nan_scores: bool = False, fit_s: float = 0.0,
                 seed_noise: float = 0.0):
        super().__init__()
        self.fail_fit, self.nan_scores, self.fit_s, self.seed_noise = fail_fit, nan_scores, fit_s, seed_noise
        self.gain = torch.nn.Parameter(torch.ones(()))
        self.register_buffer("trained_seed", torch.zeros(()))  # saved with the checkpoint

    def fit(self, train, val, *, train_groups, val_groups, seed, budget, progress=None):
        if self.fail_fit:
            raise RuntimeError("deliberately broken detector")
        time.sleep(self.fit_s)  # a slow training, for scheduling tests
        self.trained_seed.fill_(seed)
        # what the engine's precision did to training's forward passes
        autocast = torch.is_autocast_enabled(train.device.type)
        return {"epochs": 0, "autocast": str(torch.get_autocast_dtype(train.device.type)) if autocast else None}

    def reconstruct(self, x):
        return self.normal_mean.expand_as(x)

    def score(self, x):
        s = self.gain * ((x - self.normal_mean) ** 2).mean(dim=(1, 2, 3))
        if self.seed_noise:  # a per-clip draw that differs by seed: detectors of different seeds disagree
            s = s + self.seed_noise * torch.frac(torch.sin(x.flatten(1).sum(1) * (self.trained_seed + 1) * 12.9898)
                                                 * 43758.5453)
        return s * float("nan") if self.nan_scores else s

    def reference(self, x):
        return self.reconstruct(x)


@detectors.register("test-scorer", summary="engine tests: the template score, no reconstruction", version=1)
class Scorer(Template):
    pass


@explainers.register("test-badshape", summary="engine tests: returns a wrongly shaped map", version=1)
class BadShape(Explainer):
    def explain(self, detector, batch, *, generator):
        return Explanation(attribution=torch.zeros(len(batch), 3, device=batch.x.device))


@metrics.register("test-band-mass", summary="engine tests: share of |attribution| inside the mask", version=1,
                  needs={"tf_mask"}, family="localisation", higher_is_better=True)
def band_mass(ctx: MetricContext) -> MetricResult:
    a = ctx.explanation.attribution.abs()
    m = ctx.batch.tf_mask.float()
    return MetricResult(values={"": (a * m).sum((1, 2)) / a.sum((1, 2)).clamp_min(1e-12)}, chance=m.mean((1, 2)))


# what `test-probe` saw in each explain call of this process: (autocast dtype or None, inputs per forward)
PROBED: list[tuple[str | None, int]] = []


@explainers.register("test-probe", summary="engine tests: records the precision and forward bound it runs under",
                     version=1)
class Probe(Explainer):
    def explain(self, detector, batch, *, generator):
        device = batch.x.device.type
        dtype = str(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else None
        PROBED.append((dtype, self.examples_per_forward(batch.x.device)))
        # a map computed inside the autocast region: its precision is the forward pass's
        return Explanation(attribution=(batch.x[:, 0] @ torch.eye(batch.x.shape[-1], device=batch.x.device)).abs())


# the dtype of the attribution each `test-dtype` metric call received in this process
METRIC_DTYPES: list[str] = []


@metrics.register("test-dtype", summary="engine tests: records the dtype of the map a metric receives", version=1,
                  family="other", higher_is_better=True)
def map_dtype(ctx: MetricContext) -> MetricResult:
    METRIC_DTYPES.append(str(ctx.explanation.attribution.dtype))
    return MetricResult(values={"": ctx.explanation.attribution.flatten(1).mean(1).double()})


@explainers.register("test-exits", summary="engine tests: a plugin that calls sys.exit", version=1)
class Exits(Explainer):
    def explain(self, detector, batch, *, generator):
        raise SystemExit(3)


def _kill_this_worker() -> None:
    """SIGKILL the Dask worker process this runs in; refuses anywhere else (the test process)."""
    import os
    import signal

    from distributed import get_worker
    get_worker()  # raises ValueError outside a worker
    os.kill(os.getpid(), signal.SIGKILL)


@explainers.register("test-kills-worker", summary="engine tests: SIGKILLs the Dask worker that explains", version=1)
class KillsWorker(Explainer):
    """`once`: a file path; the first worker to explain creates it and dies, later ones explain (zeros).
    Empty: every worker dies."""

    def __init__(self, once: str = ""):
        super().__init__()
        self.once = once

    def explain(self, detector, batch, *, generator):
        from pathlib import Path
        if not self.once or not Path(self.once).exists():
            if self.once:
                Path(self.once).touch()
            _kill_this_worker()
        return Explanation(attribution=torch.zeros(len(batch), *batch.x.shape[-2:], device=batch.x.device))


def run_suite_text(tmp_path, text: str, out: str = "runs", leaderboards: str | None = None,
                   executor=None, forward_bound: int | None = None):
    """Write suite `text` to `<tmp_path>/<out>.toml`, run it into `<tmp_path>/<out>` on the CPU and publish it into
    `<tmp_path>/<leaderboards>` (default `lb-<out>`): (summary, published folder, suite file)."""
    from benchmark.executors import LocalExecutor
    from benchmark.leaderboard import publish
    from benchmark.runner import run_suite
    from benchmark.store import Store
    from benchmark.suites import load_suite

    path = tmp_path / f"{out}.toml"
    path.write_text(text)
    suite = load_suite(str(path))
    summary = run_suite(suite, out=tmp_path / out, device=torch.device("cpu"), executor=executor or LocalExecutor(),
                        progress="off", forward_bound=forward_bound)
    return summary, publish(Store(tmp_path / out), suite.name, tmp_path / (leaderboards or f"lb-{out}")), path
