# syntax=docker/dockerfile:1
# The GPU worker: one process holding DeepSeek-OCR resident on one GPU. torch 2.13.0 from the
# default index is the CUDA 13.0 build (its CUDA libraries come as wheels; the base image brings
# the container toolkit's settings and refuses drivers too old for CUDA 13.0). The CPU override
# (infra/compose/cpu.yml) builds the same image with the CPU build of torch instead.
# The image also runs the one-shot `model` service (infra/model/fetch_model.py).
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install --yes --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3.12 -m venv /opt/venv
WORKDIR /src
COPY infra/docker/constraints.txt ./
# Empty: the default index (CUDA build). The CPU override passes the CPU wheel index.
ARG TORCH_INDEX_URL=
RUN if [ -n "$TORCH_INDEX_URL" ]; then export PIP_INDEX_URL="$TORCH_INDEX_URL"; fi \
    && pip install --no-cache-dir torch==2.13.0
RUN pip install --no-cache-dir --constraint constraints.txt setuptools
# Dependencies first, from the project metadata alone, so code changes reuse this layer.
COPY pyproject.toml ./
RUN mkdir scriptorium api worker \
    && touch scriptorium/__init__.py api/__init__.py worker/__init__.py \
    && pip install --no-cache-dir --no-build-isolation --constraint constraints.txt ".[engine]" \
    && pip uninstall --yes scriptorium
COPY scriptorium ./scriptorium
COPY api ./api
COPY worker ./worker
RUN pip install --no-cache-dir --no-build-isolation --no-deps .

FROM ${CUDA_IMAGE} AS worker-gpu
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install --yes --no-install-recommends python3.12 \
    && rm -rf /var/lib/apt/lists/*
# Workers never download weights (HF_HUB_OFFLINE); the `model` service does, once.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/huggingface
RUN groupadd --system --gid 10001 scriptorium \
    && useradd --system --uid 10001 --gid scriptorium --create-home --home-dir /home/scriptorium \
       --shell /usr/sbin/nologin scriptorium \
    && mkdir -p /run/scriptorium /models \
    && chown scriptorium:scriptorium /run/scriptorium /models
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY infra/model/fetch_model.py ./infra/model/fetch_model.py
USER 10001:10001
# The metrics exporter, when PROMETHEUS_MULTIPROC_DIR names an existing empty directory.
EXPOSE 9100
CMD ["python", "-m", "scriptorium.cli", "worker", "--queues", "gpu"]
