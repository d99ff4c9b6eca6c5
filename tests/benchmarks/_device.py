"""The device the benchmarks run on (`AXB_BENCH_DEVICE`, default cpu: `tools/gpu_check.sh` sets cuda) and the
timer that suits it: process CPU time on a CPU (a shared machine's neighbours cost less than in wall time),
wall time with the GPU synchronised on a GPU (kernels run asynchronously to the host)."""
from __future__ import annotations

import os
import time

import torch

DEVICE = torch.device(os.environ.get("AXB_BENCH_DEVICE", "cpu"))


def synchronised_clock() -> float:
    """Wall time once the GPU's queued work is done."""
    torch.cuda.synchronize(DEVICE)
    return time.perf_counter()


TIMER = synchronised_clock if DEVICE.type == "cuda" else time.process_time
