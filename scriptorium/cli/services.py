"""The long-running processes (API, workers, scheduler), migrations and the OpenAPI contract."""

from __future__ import annotations

import json
from pathlib import Path

import click

from scriptorium.cli.context import fail, settings


@click.command()
@click.option("--host", help="interface to listen on (default: api.host)")
@click.option("--port", type=int, help="port to listen on (default: api.port)")
def api(host: str | None, port: int | None) -> int:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app
    from scriptorium.logging import configure_logging

    current = settings()
    configure_logging(level=current.log.level, json_output=current.json_logs)
    uvicorn.run(
        create_app(current),
        host=host or current.api.host,
        port=port or current.api.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
    return 0


@click.command(short_help="Run a Celery worker (--queues cpu or gpu).")
@click.option("--queues", default="cpu", show_default=True, help="cpu, gpu or both (comma-separated)")
@click.option(
    "--concurrency", type=int, default=2, show_default=True, help="CPU worker processes (GPU workers use 1)"
)
@click.option("--hostname", help="Celery node name (default: Celery's)")
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="written once the process (and its engine) is ready",
)
def worker(queues: str, concurrency: int, hostname: str | None, ready_file: Path | None) -> int:
    """Run a Celery worker: CPU (preparation, routing) or GPU (the engine)."""
    from worker.main import run_worker

    run_worker(
        settings(),
        queues=queues.split(","),
        concurrency=concurrency,
        hostname=hostname,
        ready_file=ready_file,
    )
    return 0


@click.command()
@click.option(
    "--liveness-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="touched after every successful sweep (for worker-health)",
)
def beat(liveness_file: Path | None) -> int:
    """Run the periodic scheduler and the sweeper."""
    from worker.main import run_beat

    run_beat(settings(), liveness_file=liveness_file)
    return 0


@click.command(
    "worker-health", short_help="Exit 0 while a worker's (or the sweeper's) liveness file is fresh."
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--max-age-s", type=float, default=60.0, show_default=True, help="older than this is unhealthy")
def worker_health(file: Path, max_age_s: float) -> int:
    """Container healthcheck: FILE (a worker's --ready-file or beat's --liveness-file) exists and
    was touched within --max-age-s. Workers touch it while their broker answers and they consume."""
    import time

    try:
        age = time.time() - file.stat().st_mtime
    except FileNotFoundError:
        click.echo(f"unhealthy: {file} does not exist (not ready yet)", err=True)
        return 1
    if age > max_age_s:
        click.echo(f"unhealthy: {file} last touched {age:.0f} s ago", err=True)
        return 1
    return 0


@click.command(short_help="Apply database migrations; create the storage bucket when missing.")
@click.argument("revision", default="head")
def migrate(revision: str) -> int:
    """Bring the persistent stores to what this version needs: apply database migrations up to
    REVISION (default: head), then create the storage bucket when it is missing (a fleet outside
    compose needs no other set-up step). Exits 1 when storage cannot be reached."""
    from scriptorium.db.migrate import upgrade
    from scriptorium.storage import ObjectStore, StorageUnavailable

    current = settings()
    upgrade(current.db.url, revision=revision)
    bucket, endpoint = current.storage.bucket, current.storage.endpoint
    try:
        created = ObjectStore(current.storage).ensure_bucket()
    except StorageUnavailable as error:
        fail(f"storage at {endpoint} did not give bucket {bucket!r}: {error}")
        return 1
    click.echo(
        f"created bucket {bucket!r} at {endpoint}" if created else f"bucket {bucket!r} exists at {endpoint}"
    )
    return 0


@click.command()
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="write to this file instead of stdout"
)
def openapi(output: Path | None) -> int:
    """Print the OpenAPI schema (docs/openapi.json is this output)."""
    from api.app import openapi_document

    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)
    return 0
