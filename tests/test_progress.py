"""Progress of a run: one line per cell off a terminal, an ETA weighted by each cell's estimated cost."""
import io
from types import SimpleNamespace

import pytest

from benchmark.progress import RunProgress, clock, default_mode


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def fake_time(monkeypatch):
    c = Clock()
    monkeypatch.setattr("benchmark.progress.time.monotonic", c)
    return c


def cell(key):
    return SimpleNamespace(key=key, label=f"evaluate {key}")


def test_lines_mode_prints_one_line_per_cell_with_a_cost_weighted_eta(fake_time):
    stream = io.StringIO()
    # a cheap cell (1 s estimated) and an expensive one (99 s): counting cells would promise half the run done
    report = RunProgress("s", 3, {"a": 1.0, "b": 99.0, "c": 5.0}, "lines", stream=stream)
    report.cached(1)  # c is in the store
    report.plan([cell("a"), cell("b")])
    report.start(cell("a"))
    fake_time.now += 2.0  # the cheap cell took 2 s: this machine runs at half the reference speed
    report.finish("a", "evaluate a", "done")
    report.start(cell("b"))
    fake_time.now += 150.0
    report.finish("b", "evaluate b", "done")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/3] cached  1 cell already in the store"
    assert lines[1] == "[2/3] done    cell evaluate a in 2 s; ETA 3 min 18 s (cost-weighted)"  # 99 s x 2
    assert lines[2] == "[3/3] done    cell evaluate b in 2 min 30 s"  # the last line has no ETA
    assert report.eta_seconds() == pytest.approx(0.0)


def test_a_pool_shows_each_cells_own_time_and_paces_the_eta_by_the_run(fake_time):
    """Two workers: cells end 9 s apart after running ~10 min each; the line shows the cell's recorded wall time,
    the ETA the run's pace (time between outcomes per unit of estimated cost)."""
    stream = io.StringIO()
    report = RunProgress("s", 3, {"a": 600.0, "b": 600.0, "c": 600.0}, "lines", stream=stream)
    report.plan([cell("a"), cell("b"), cell("c")])
    fake_time.now += 600.0
    report.finish("a", "train a", "done", took_s=598.0)
    fake_time.now += 9.0
    report.finish("b", "train b", "done", took_s=571.0)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/3] done    cell train a in 9 min 58 s; ETA 20 min 00 s")
    assert lines[1].startswith("[2/3] done    cell train b in 9 min 31 s; ETA 5 min 04 s")  # 609 s per 1,200


def test_unplanned_cells_leave_the_eta_and_missing_weights_take_the_median(fake_time):
    report = RunProgress("s", 4, {"a": 1.0, "b": 3.0, "c": 10.0}, "off", stream=io.StringIO())
    assert report.weight("zzz") == 3.0
    report.plan([cell("a"), cell("b"), cell("c")])
    report.plan([cell("a")])  # planning twice counts once
    assert report.remaining_weight == 14.0
    report.unplan(["c"])
    assert report.remaining_weight == 4.0
    report.start(cell("a"))
    fake_time.now += 4.0
    report.finish("a", "a", "done")
    assert report.eta_seconds() == pytest.approx(3.0 * 4.0)


def test_modes_and_clock():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    assert default_mode(False, Tty()) == "bars" and default_mode(False, io.StringIO()) == "lines"
    assert default_mode(True, Tty()) == "off"
    assert (clock(5), clock(65), clock(3 * 3600 + 120)) == ("5 s", "1 min 05 s", "3 h 02 min")
    with pytest.raises(ValueError, match="progress mode"):
        RunProgress("s", 1, {}, "loud")


def test_a_failed_cell_records_how_long_it_ran_for_its_progress_line(monkeypatch):
    """On a pool the line of a failed cell shows its own time: the failure record carries it (a done cell's
    is its cost's wall_s)."""
    from benchmark import executors
    clock_values = iter([100.0, 160.5])
    monkeypatch.setattr(executors.time, "monotonic", lambda: next(clock_values, 160.5))
    cell = SimpleNamespace(key="k", describe=lambda: {"label": "evaluate d / m / e / seed 0"})

    def broken(_):
        raise RuntimeError("deliberately")

    outcome = executors.guarded(broken, cell)
    assert outcome.record["status"] == "failed" and outcome.record["reason"] == "RuntimeError: deliberately"
    assert outcome.record["failed_after_s"] == 60.5
