#!/usr/bin/env bash
# Here, with network: download the wheels bench_gpu.py needs on the GPU host into .whl/ (git-ignored)
# (Python 3.12, x86-64; the host has numpy, JAX, PyTorch and CUDA but no TensorFlow, Keras,
# Django, Channels or daphne, and no network). Uses ../shared/device/fetch_wheels.sh, pinned
# to requirements/constraints.txt where it names a version. See bench/gpu/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
FETCH=${FETCH_WHEELS:-../shared/device/fetch_wheels.sh}
PINS=$(grep -E '^(Django|asgiref|channels|daphne|Twisted|autobahn|keras|orjson|websockets)==' requirements/constraints.txt)
rm -rf .whl
# shellcheck disable=SC2086  # one argument per pin
bash "$FETCH" .whl $PINS
du -sh .whl
