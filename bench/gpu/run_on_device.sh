#!/usr/bin/env bash
# On the GPU host, in the repository root, with .whl/ (bench/gpu/fetch_wheels.sh) carried along:
# install the wheels beside the host's own packages, then run bench/bench_gpu.py under a time
# limit. Writes bench_gpu.md (the table, rewritten after every row, so a run cut short keeps
# its rows), bench_gpu.log, daphne.log and nvidia-smi.txt to $OUT (default var/bench/gpu/out).
# Extra arguments go to bench_gpu.py (e.g. --quick, --no-daphne). See bench/gpu/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-var/bench/gpu/out}
SITE=${SITE:-/tmp/site}  # where the wheels go
LIMIT=${LIMIT:-360}  # seconds for bench_gpu.py; the wheels install before it starts
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
  || { echo "installing .whl/ failed" | tee "$OUT/bench_gpu.log"; exit 1; }
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
(nvidia-smi; python3 -c 'import jax; print(jax.__version__, jax.devices())') > "$OUT/nvidia-smi.txt" 2>&1
# SIGINT first, so bench_gpu.py stops its daphne; SIGKILL 30 s later if it has not ended.
timeout --signal=INT --kill-after=30 "$LIMIT" python3 bench/bench_gpu.py --out "$OUT/bench_gpu.md" "$@" 2>&1 \
  | tee "$OUT/bench_gpu.log"
status=${PIPESTATUS[0]}
cp var/bench/gpu/daphne.log "$OUT/" 2>/dev/null
echo "bench_gpu.py exit status $status (124: stopped at the ${LIMIT} s limit)" | tee -a "$OUT/bench_gpu.log"
exit "$status"
