# syntax=docker/dockerfile:1
# The API image, also used for migrations. It installs the project without the `engine` extra,
# so it carries neither torch nor transformers. Target `flower` adds Flower for the monitoring
# profile.
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
    && pip install --no-cache-dir --no-build-isolation --constraint constraints.txt . \
    && pip uninstall --yes scriptorium
COPY scriptorium ./scriptorium
COPY api ./api
COPY worker ./worker
RUN pip install --no-cache-dir --no-build-isolation --no-deps .

FROM ${PYTHON_IMAGE} AS api
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 scriptorium \
    && useradd --system --uid 10001 --gid scriptorium --create-home --home-dir /home/scriptorium \
       --shell /usr/sbin/nologin scriptorium
COPY --from=build /opt/venv /opt/venv
# `scriptorium migrate` finds migrations/ in the working directory.
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
USER 10001:10001
EXPOSE 8000
CMD ["python", "-m", "scriptorium.cli", "api"]

FROM api AS flower
USER 0:0
COPY infra/docker/constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --constraint /tmp/constraints.txt flower \
    && rm /tmp/constraints.txt
# The fleet's own Celery app, so Flower talks to Redis with the workers' transport options.
COPY infra/monitoring/flower/flower_app.py /opt/flower/flower_app.py
ENV PYTHONPATH=/opt/flower
USER 10001:10001
EXPOSE 5555
CMD ["celery", "--app", "flower_app", "flower", "--port=5555"]
