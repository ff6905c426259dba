#!/usr/bin/env bash
# Wheels for bench/gpu_engine.sh on a GPU host that cannot reach a package registry. Run it here,
# where pip works; it fills two folders (default .whl/, ignored by git) for Python 3.12 on x86-64:
#
#   project/   what this checkout's engine path needs beyond a CUDA torch image: transformers and
#              tokenizers at this environment's versions, pydantic(-settings), structlog, pillow …
#   official/  what DeepSeek-OCR's published model code was written for: transformers 4.46.3,
#              tokenizers 0.20.3, a huggingface-hub below 1.0, addict, easydict
#
#   bench/gpu_wheels.sh [DEST]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
DEST="${1:-.whl}"
PROJECT_PACKAGES=(transformers tokenizers huggingface-hub safetensors pydantic pydantic-core pydantic-settings
    python-dotenv annotated-types typing-inspection typing-extensions structlog pillow)
OFFICIAL_PACKAGES=(transformers==4.46.3 tokenizers==0.20.3 "huggingface-hub<1.0" addict easydict)

download() {
    local folder="$1"
    shift
    mkdir -p "$folder"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$folder" "$@"
}

pinned=()
for package in "${PROJECT_PACKAGES[@]}"; do
    version="$("$PYTHON" -m pip show "$package" 2>/dev/null | sed -n 's/^Version: //p')"
    [[ -n "$version" ]] || { echo "$package is not installed in $PYTHON's environment" >&2; exit 1; }
    pinned+=("$package==$version")
done
download "$DEST/project" "${pinned[@]}"
download "$DEST/official" "${OFFICIAL_PACKAGES[@]}"
du -sh "$DEST/project" "$DEST/official"
