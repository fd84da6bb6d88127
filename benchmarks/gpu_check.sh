#!/usr/bin/env bash
# GPU check: train the XGBoost and PyTorch MLP families on the GPU and on the CPU (same
# generated 1,000,000 x 30 data) and print the timings with the card's name.
#   bash benchmarks/gpu_check.sh [--rows N]
# Needs: a CUDA GPU, torch with CUDA, xgboost built with CUDA (the PyPI wheel is), the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH="${PYTHONPATH:-}:$(pwd)" PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py "$@"
