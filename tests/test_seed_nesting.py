"""Seeds nested in clips: a clip scored under several detector seeds counts once in CIs and paired tests."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.leaderboard import BOOTSTRAP_RESAMPLES, bootstrap_ci
from benchmark.statistics import paired_test, paired_wilcoxon


def test_one_row_per_clip_is_the_plain_bootstrap():
    values = np.random.default_rng(3).normal(size=20)
    assert bootstrap_ci(values) == bootstrap_ci(values, clusters=np.arange(20))


def test_clustered_bootstrap_resamples_whole_clips():
    """Three seeds that agree per clip: the clip bootstrap is as wide as one seed's (20 clips), the row
    bootstrap of 60 'independent' rows ~ sqrt(3) times narrower."""
    rng = np.random.default_rng(0)
    per_clip = rng.normal(size=20)
    values = np.repeat(per_clip, 3) + rng.normal(scale=1e-3, size=60)
    clips = np.repeat(np.arange(20), 3)
    lo, hi = bootstrap_ci(values, clusters=clips)
    naive_lo, naive_hi = bootstrap_ci(values)
    one_lo, one_hi = bootstrap_ci(per_clip)
    assert (hi - lo) == pytest.approx(one_hi - one_lo, rel=0.15)
    assert (hi - lo) / (naive_hi - naive_lo) == pytest.approx(np.sqrt(3), rel=0.2)
    # the independent reference: resample clip ids by hand
    draws = np.random.default_rng(0).integers(0, 20, size=(BOOTSTRAP_RESAMPLES, 20))
    frame = pd.DataFrame({"clip": clips, "v": values}).groupby("clip")["v"]
    sums, counts = frame.sum().to_numpy(), frame.size().to_numpy()
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))


def test_paired_test_averages_a_clips_seeds():
    index = pd.MultiIndex.from_product([[f"c{i}" for i in range(6)], [0, 1]], names=["clip_id", "detector_seed"])
    rng = np.random.default_rng(1)
    a = pd.Series(rng.normal(size=12) + 1.0, index=index)
    b = pd.Series(rng.normal(size=12), index=index)
    n, p = paired_test(a, b)
    ma, mb = a.groupby(level="clip_id").mean(), b.groupby(level="clip_id").mean()
    assert n == 6 and p == pytest.approx(paired_wilcoxon(ma.to_numpy(), mb.to_numpy()))
    single = pd.MultiIndex.from_product([[f"c{i}" for i in range(6)], [0]], names=["clip_id", "detector_seed"])
    x, y = pd.Series(np.arange(6.0), index=single), pd.Series(np.arange(6.0)[::-1] * 0.5, index=single)
    assert paired_test(x, y) == (6, pytest.approx(paired_wilcoxon(x.to_numpy(), y.to_numpy())))
