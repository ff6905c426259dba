#!/usr/bin/env bash
# DeepSeek-OCR engine on one GPU, no network needed: the full-size architecture with random weights
# (3.34 B parameters, bf16) is written in the published checkpoint layout, loaded through the engine's
# loader, then every mode reads a batch of synthetic A4 pages generating exactly NEW_TOKENS each (EOS
# suppressed). Prints model load time and, per mode, pages/s, tokens/s and peak GPU memory.
# The paper's reference point: ~2.4 pages/s per A100-40G at ~1,000 output tokens per page (vLLM).
#
#   bench/gpu_engine.sh                 # on the GPU host; PAGES=8 NEW_TOKENS=1000 MODES=all by default
#   bench/gpu_engine.sh --tiny          # dry run of the same script on CPU with the tiny architecture
#   bench/gpu_engine.sh --compare-official DIR [bench.gpu_compare options]
#       our engine (batched and one page at a time) beside DeepSeek-OCR's own transformers code
#       (its infer(), one page at a time) on the same random weights and pages; DIR is a checkout of
#       the published model repository (its *.py files; weights not needed). Finishes within 8 min.
#
# Needs a Python with a CUDA build of torch; about 20 GB of free disk and RAM for the temporary
# checkpoint (SCRATCH, default /tmp). Packages the host lacks come from WHEELS (default .whl when it
# exists, made by bench/gpu_wheels.sh): WHEELS/project is installed over the host's packages for our
# engine, WHEELS/official is given to the official code only. Stops itself after LIMIT_S seconds
# (570; 440 with --compare-official, whose call then ends within 8 minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
SCRATCH="${SCRATCH:-/tmp}"
WHEELS="${WHEELS:-.whl}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

# Installs the wheels of folder $1 into the new directory $2; nothing when the folder has none.
install_wheels() {
    local wheels=("$1"/*.whl)
    [[ -e "${wheels[0]}" ]] || return 1
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "${wheels[@]}"
}

if [[ "${1:-}" == "--tiny" ]]; then
    shift
    exec timeout "${LIMIT_S:-570}" "$PYTHON" bench/engine.py throughput --size tiny --device cpu \
        --pages "${PAGES:-2}" --new-tokens "${NEW_TOKENS:-16}" --modes "${MODES:-all}" "$@"
fi

official=""
if [[ "${1:-}" == "--compare-official" ]]; then
    official="${2:-}"
    if [[ ! -f "$official/modeling_deepseekocr.py" ]]; then
        echo "--compare-official needs a checkout of the published DeepSeek-OCR model repository (its *.py files)," \
            "e.g. GIT_LFS_SKIP_SMUDGE=1 git clone https://huggingface.co/deepseek-ai/DeepSeek-OCR;" \
            "'${official}' has no modeling_deepseekocr.py" >&2
        exit 2
    fi
    shift 2
fi

sites="$(mktemp -d "$SCRATCH/bench-sites-XXXXXX")"
trap 'rm -rf "$sites"' EXIT
if install_wheels "$WHEELS/project" "$sites/project"; then
    export PYTHONPATH="$sites/project${PYTHONPATH:+:$PYTHONPATH}"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__); assert torch.cuda.is_available(), "no CUDA device visible"'

if [[ -n "$official" ]]; then
    official_site=()
    if install_wheels "$WHEELS/official" "$sites/official"; then
        official_site=(--official-site "$sites/official")
    fi
    limit="${LIMIT_S:-440}"
    timeout "$((${limit%.*} + 10))" "$PYTHON" -m bench.gpu_compare --official "$official" "${official_site[@]}" \
        --pages "${PAGES:-3}" --new-tokens "${NEW_TOKENS:-256}" --modes "${MODES:-base,gundam}" \
        --device "${DEVICE:-cuda}" --scratch "$SCRATCH" --limit-s "$limit" "$@"
    exit
fi

timeout "${LIMIT_S:-570}" "$PYTHON" bench/engine.py throughput --size full --device "${DEVICE:-cuda}" \
    --pages "${PAGES:-8}" --new-tokens "${NEW_TOKENS:-1000}" --modes "${MODES:-all}" \
    --scratch "$SCRATCH" "$@"
