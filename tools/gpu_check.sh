#!/usr/bin/env bash
# The CUDA paths, end to end, in under 5 minutes on a GPU machine (run from the project root):
#   1. a plain matmul's TFLOP/s in fp32 and bf16 (the ceiling for `run --estimate --gpu-tflops`);
#   2. the smoke suite on --device cuda: local, through a one-worker Dask cluster (cells ask for its GPU
#      resource) and at --precision bf16; the tables side by side (equal up to GPU nondeterminism; bf16 close);
#   3. the explainer throughput benchmarks on the GPU (clips per second: batched vs one clip at a time vs the
#      bare passes) and the detector throughput benchmarks.
# Every step has its own time limit, so the whole script stays under 5 minutes even where a step hangs.
# Usage: bash tools/gpu_check.sh [PYTHON]   (default .venv/bin/python). Figures go to stdout and $OUT if set.
set -uo pipefail
PY=${1:-.venv/bin/python}
T=$(mktemp -d -t gpu-check.XXXX)
OUT=${OUT:-$T}
export HF_HUB_OFFLINE=1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')" || exit 1
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
# the sustained matmul rate, fp32 and bf16: an upper bound for `run --estimate --gpu-tflops`
timeout 30 "$PY" - <<'PY'
import time, torch
for dtype in (torch.float32, torch.bfloat16):
    a = torch.randn(4096, 4096, device="cuda", dtype=dtype)
    a @ a; torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    print(f"matmul 4096^2 {dtype}: {20 * 2 * 4096 ** 3 / (time.perf_counter() - t) / 1e12:.1f} TFLOP/s")
PY
t0=$(date +%s)
smoke() {  # NAME SECONDS ARGS...: the smoke suite on CUDA into $T/runs-NAME, published to $T/lb-NAME
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$PY" -m benchmark run --suite smoke --device cuda --progress lines --out "$T/runs-$name" \
    --leaderboards "$T/lb-$name" "$@" >"$OUT/smoke-$name.log" 2>&1
  echo "smoke $name: rc $? after $(( $(date +%s) - t0 )) s; $(tail -1 "$OUT/smoke-$name.log")"
}
smoke local 55
smoke dask 55 --executor dask --workers 1
smoke bf16 40 --precision bf16
"$PY" - "$T" <<'PY'
import sys, pathlib, pandas as pd
t = pathlib.Path(sys.argv[1])
boards = {n: pd.read_csv(t / f"lb-{n}/smoke/leaderboard.csv") for n in ("local", "dask", "bf16")
          if (t / f"lb-{n}/smoke/leaderboard.csv").is_file()}
if "local" in boards:
    a = boards["local"]
    cols = [c for c in a.columns if c.endswith(".mean")]
    for n, b in boards.items():
        if n != "local":
            print(f"smoke on cuda, local vs {n}: max |difference| of means {float((a[cols] - b[cols]).abs().max().max()):.3g}")
    print(pd.read_csv(t / "lb-local/smoke/cost.csv")[["cell", "explainer", "wall_s", "peak_memory_mb"]].to_string())
PY
for bench in explainer_throughput:90 detector_throughput:35; do
  name=${bench%%:*}; limit=${bench##*:}
  AXB_BENCH_DEVICE=cuda timeout "$limit" "$PY" -m pytest -q "tests/benchmarks/test_$name.py" \
    --benchmark-only --benchmark-enable --benchmark-columns=min,mean,rounds \
    --benchmark-json="$OUT/${name}_cuda.json" -p no:cacheprovider 2>&1 | tail -25
  echo "$name: rc $? after $(( $(date +%s) - t0 )) s"
done
echo "total: $(( $(date +%s) - t0 )) s"
