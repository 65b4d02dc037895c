#!/usr/bin/env bash
# The paper's route on a GPU in one table (bench/gpu_check.py): a 4-task meta-iteration of the full x4plus with the
# paper's losses, half-precision inference on a real photo, torchrun with NCCL. Within 10 minutes on one GPU.
# Run from the repository root, in the project's environment (make install), ideally after `make demo` (real weights).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "bench/gpu_check.sh: skipped, no CUDA device (torch.cuda.is_available() is false)"
  exit 0
fi
exec timeout 600 "$PYTHON" bench/gpu_check.py "$@"
