#!/usr/bin/env bash
# DeepSeek-OCR engine on one GPU, no network needed: the full-size architecture with random weights
# (3.34 B parameters, bf16) is written in the published checkpoint layout, loaded through the engine's
# loader, then every mode reads a batch of synthetic A4 pages generating exactly NEW_TOKENS each (EOS
# suppressed). Prints model load time and, per mode, pages/s, tokens/s and peak GPU memory.
# The paper's reference point: ~2.4 pages/s per A100-40G at ~1,000 output tokens per page (vLLM).
#
#   bench/gpu_engine.sh                 # on the GPU host; PAGES=8 NEW_TOKENS=1000 MODES=all by default
#   bench/gpu_engine.sh --tiny          # dry run of the same script on CPU with the tiny architecture
#
# Needs the project's Python environment with a CUDA build of torch; about 20 GB of free disk and RAM
# for the temporary checkpoint (SCRATCH, default /tmp). Stops itself after LIMIT_S seconds (570).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
LIMIT_S="${LIMIT_S:-570}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

if [[ "${1:-}" == "--tiny" ]]; then
    shift
    exec timeout "$LIMIT_S" "$PYTHON" bench/engine.py throughput --size tiny --device cpu \
        --pages "${PAGES:-2}" --new-tokens "${NEW_TOKENS:-16}" --modes "${MODES:-all}" "$@"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__); assert torch.cuda.is_available(), "no CUDA device visible"'
exec timeout "$LIMIT_S" "$PYTHON" bench/engine.py throughput --size full --device "${DEVICE:-cuda}" \
    --pages "${PAGES:-8}" --new-tokens "${NEW_TOKENS:-1000}" --modes "${MODES:-all}" \
    --scratch "${SCRATCH:-/tmp}" "$@"
