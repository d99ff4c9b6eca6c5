#!/usr/bin/env bash
# The CUDA paths, end to end, in a few minutes on a GPU machine (run from the project root):
#   1. the smoke suite on --device cuda, local and through a one-worker Dask cluster (same tables expected
#      up to GPU nondeterminism; both printed side by side);
#   2. the explainer throughput benchmarks on the GPU (clips per second per explainer and pattern).
# Usage: bash tools/gpu_check.sh [PYTHON]   (default .venv/bin/python). Figures go to stdout and $OUT if set.
set -euo pipefail
PY=${1:-.venv/bin/python}
T=$(mktemp -d -t gpu-check.XXXX)
OUT=${OUT:-$T}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
t0=$(date +%s)
timeout 240 "$PY" -m benchmark run --suite smoke --device cuda --progress lines --out "$T/runs" \
  --leaderboards "$T/lb" 2>&1 | tail -4
timeout 240 "$PY" -m benchmark run --suite smoke --device cuda --executor dask --workers 1 --progress lines \
  --out "$T/runs-dask" --leaderboards "$T/lb-dask" 2>&1 | tail -2
"$PY" - "$T" <<'PY'
import sys, pandas as pd
t = sys.argv[1]
a, b = (pd.read_csv(f"{t}/{d}/smoke/leaderboard.csv") for d in ("lb", "lb-dask"))
cols = [c for c in a.columns if c.endswith(".mean")]
print("smoke on cuda, local vs dask: max |difference| of means", float((a[cols] - b[cols]).abs().max().max()))
print(pd.read_csv(f"{t}/lb/smoke/cost.csv")[["cell", "explainer", "wall_s", "peak_memory_mb"]].to_string())
PY
echo "smoke suites: $(( $(date +%s) - t0 )) s"
AXB_BENCH_DEVICE=cuda timeout 300 "$PY" -m pytest -q tests/benchmarks/test_explainer_throughput.py \
  --benchmark-only --benchmark-enable --benchmark-columns=min,mean,rounds \
  --benchmark-json="$OUT/explainer_throughput_cuda.json" -p no:cacheprovider 2>&1 | tail -25
echo "total: $(( $(date +%s) - t0 )) s"
