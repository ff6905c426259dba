# syntax=docker/dockerfile:1
# The CPU worker: preparation (sandboxed rasterisation, routing), webhooks and the sweeper.
# No torch: it installs the project without the `engine` extra, plus `tokenizers` so routing
# counts text tokens with the model's own tokenizer when the models volume is mounted.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY infra/docker/constraints.txt ./
RUN pip install --no-cache-dir --constraint constraints.txt setuptools
# Dependencies first, from the project metadata alone, so code changes reuse this layer.
COPY pyproject.toml ./
RUN mkdir scriptorium api worker \
    && touch scriptorium/__init__.py api/__init__.py worker/__init__.py \
    && pip install --no-cache-dir --no-build-isolation --constraint constraints.txt . tokenizers \
    && pip uninstall --yes scriptorium
COPY scriptorium ./scriptorium
COPY api ./api
COPY worker ./worker
RUN pip install --no-cache-dir --no-build-isolation --no-deps .

FROM ${PYTHON_IMAGE} AS worker-cpu
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 scriptorium \
    && useradd --system --uid 10001 --gid scriptorium --create-home --home-dir /home/scriptorium \
       --shell /usr/sbin/nologin scriptorium \
    && mkdir -p /run/scriptorium /models \
    && chown scriptorium:scriptorium /run/scriptorium /models
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
# The metrics exporter, when PROMETHEUS_MULTIPROC_DIR names an existing empty directory.
EXPOSE 9100
CMD ["python", "-m", "scriptorium.cli", "worker", "--queues", "cpu"]
