"""Progress of a run: bars on a terminal, one log line per cell elsewhere (nohup, CI, Slurm, `| tee`);
`Counter` for the steps of `data synth` and `publish`.

The ETA is weighted by each cell's estimated cost (`benchmark.estimate`): cells differ 100x in cost, so
counting cells would promise the end of a run long before it comes. The measured seconds of the cells
computed so far calibrate the reference rates to this machine: ETA = remaining estimated cost x (seconds
spent / estimated cost done). Cached cells take no time and count for neither.
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

MODES = ("bars", "lines", "off")


def default_mode(no_progress: bool, stream: TextIO = sys.stderr) -> str:
    if no_progress:
        return "off"
    return "bars" if stream.isatty() else "lines"


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


class RunProgress:
    """Cells of one run. `weights[key]` is a cell's estimated seconds (missing: the median weight)."""

    def __init__(self, name: str, total: int, weights: dict[str, float], mode: str = "off",
                 stream: TextIO = sys.stderr):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}; modes: {', '.join(MODES)}")
        self.name, self.total, self.mode, self.stream = name, total, mode, stream
        self.weights = weights
        fallback = sorted(weights.values())[len(weights) // 2] if weights else 1.0
        self._fallback = max(fallback, 1e-6)
        self.finished = 0
        self.remaining_weight = 0.0
        self.done_weight = 0.0
        self.spent = 0.0
        self._started: float | None = None
        self._last = time.monotonic()
        self._planned: set[str] = set()
        self._bar = tqdm(total=total, desc=f"{name} cells", unit="cell", file=stream, dynamic_ncols=True,
                         disable=mode != "bars")
        self._inner: tqdm | None = None

    def weight(self, key: str) -> float:
        return max(self.weights.get(key, self._fallback), 1e-6)

    def plan(self, cells: list[Any]) -> None:
        """Cells that will be computed (not cached): their cost is what the ETA waits for."""
        new = [c.key for c in cells if c.key not in self._planned]
        self._planned.update(new)
        self.remaining_weight += sum(self.weight(k) for k in new)

    def unplan(self, keys) -> None:
        """Planned cells that will not run after all (found cached, or inapplicable); unplanned keys are ignored."""
        gone = [k for k in keys if k in self._planned]
        self._planned.difference_update(gone)
        self.remaining_weight = max(self.remaining_weight - sum(self.weight(k) for k in gone), 0.0)

    def cached(self, count: int = 1) -> None:
        """Cells already in the store: counted, not timed."""
        self.finished += count
        self._bar.update(count)
        if self.mode == "lines":
            width = len(str(self.total))
            print(f"[{self.finished:>{width}}/{self.total}] "
                  f"cached  {count} cell{'s' * (count != 1)} already in the store",
                  file=self.stream, flush=True)
        self._last = time.monotonic()

    def start(self, cell: Any) -> None:
        self._started = time.monotonic()
        if self.mode == "bars":
            self._close_inner()
            self._inner = tqdm(desc=cell.label, file=self.stream, leave=False, bar_format="{desc}: {postfix}",
                               dynamic_ncols=True)

    def update(self, message: str) -> None:
        if self._inner is not None:
            self._inner.set_postfix_str(message)

    def finish(self, key: str, label: str, status: str, computed: bool = True, took_s: float | None = None) -> None:
        """One cell ended (`computed`: it ran in this process and its time counts for the ETA; `took_s`: its own
        wall time as it recorded it, which the line shows; the ETA counts the time between events, which on a
        pool of workers is not one cell's)."""
        now = time.monotonic()
        # cells run elsewhere (a cluster) have no start here: the time since the previous event stands in
        began = self._started if self._started is not None else self._last
        seconds = now - began if computed else 0.0
        self._started = None
        self._last = now
        if computed:
            w = self.weight(key)
            self.remaining_weight = max(self.remaining_weight - w, 0.0)
            self.done_weight += w
            self.spent += seconds
        self.finished += 1
        self._bar.update(1)
        if self.mode == "bars" and self._inner is not None:
            self._close_inner()
        if self.mode == "lines":
            width = len(str(self.total))
            took = f" in {clock(took_s if took_s is not None else seconds)}" if computed else ""
            print(f"[{self.finished:>{width}}/{self.total}] {status:<7} cell {label}{took}{self._eta()}",
                  file=self.stream, flush=True)

    def eta_seconds(self) -> float | None:
        if self.done_weight <= 0 or self.spent <= 0:
            return None
        return self.remaining_weight * self.spent / self.done_weight

    def _eta(self) -> str:
        eta = self.eta_seconds()
        if eta is None or self.remaining_weight <= 0 or self.finished >= self.total:
            return ""
        return f"; ETA {clock(eta)} (cost-weighted)"

    def _close_inner(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None

    def close(self) -> None:
        self._close_inner()
        self._bar.close()


class Counter:
    """Progress over many small items (clips written, figures drawn): a bar on a terminal, otherwise a line
    at every tenth of the way (a log gets ten lines, not ten thousand)."""

    def __init__(self, desc: str, total: int, mode: str | None = None, stream: TextIO = sys.stderr):
        self.desc, self.total, self.stream = desc, total, stream
        self.mode = mode or default_mode(False, stream)
        self.done = 0
        self._t0 = time.monotonic()
        self._bar = tqdm(total=total, desc=desc, file=stream, dynamic_ncols=True, leave=False,
                         disable=self.mode != "bars")

    def update(self, n: int = 1) -> None:
        before = self.done * 10 // max(self.total, 1)
        self.done += n
        self._bar.update(n)
        if self.mode == "lines" and self.done * 10 // max(self.total, 1) > before:
            print(f"{self.desc}: {self.done}/{self.total} in {clock(time.monotonic() - self._t0)}",
                  file=self.stream, flush=True)

    def stage(self, name: str) -> None:
        """The next named step of a short sequence (`publish`: tables, statistics, figures, page) begins."""
        self._bar.set_postfix_str(name)
        if self.mode == "lines":
            print(f"{self.desc}: {name} ({self.done + 1}/{self.total}) at {clock(time.monotonic() - self._t0)}",
                  file=self.stream, flush=True)
        self.done += 1
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
