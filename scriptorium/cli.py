"""The ``scriptorium`` command: the composition root of every process.

Each sub-command builds the settings once, then imports only what it runs (the API never
imports torch; ``ocr`` and ``route`` need no services).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from scriptorium.settings import Settings, load_settings


def _settings() -> Settings:
    return load_settings()


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from scriptorium.logging import configure_logging

    settings = _settings()
    configure_logging(level=settings.log.level, json_output=settings.json_logs)
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.api.host,
        port=args.port or settings.api.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.main import run_worker

    run_worker(
        _settings(),
        queues=args.queues.split(","),
        concurrency=args.concurrency,
        hostname=args.hostname,
        ready_file=Path(args.ready_file) if args.ready_file else None,
    )
    return 0


def cmd_beat(_: argparse.Namespace) -> int:
    from worker.main import run_beat

    run_beat(_settings())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from scriptorium.db.migrate import upgrade

    upgrade(_settings().db.url, revision=args.revision)
    return 0


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from scriptorium.db.session import make_engine, make_session_factory, transaction
    from scriptorium.tenants import create_tenant

    settings = _settings()
    engine = make_engine(settings.db)
    try:
        with transaction(make_session_factory(engine)) as session:
            issued = create_tenant(session, args.name)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"tenant {issued.tenant.name} ({issued.tenant.id})", file=sys.stderr)
    print("API key (shown once, store it now):", file=sys.stderr)
    print(issued.key)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from scriptorium.client import ingest_paths

    key = args.api_key or os.environ.get("SCRIPTORIUM_API_KEY")
    if not key:
        print("error: pass --api-key or set SCRIPTORIUM_API_KEY", file=sys.stderr)
        return 2
    url = args.url or os.environ.get("SCRIPTORIUM_API_URL") or _settings().api.public_url
    return ingest_paths(
        [Path(p) for p in args.paths],
        base_url=url,
        api_key=key,
        mode=args.mode,
        task=args.task,
        pages=args.pages,
        progress=not args.no_progress,
    )


def cmd_openapi(args: argparse.Namespace) -> int:
    from api.app import openapi_document

    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _forward(module: str, function: str) -> object:
    imported = __import__(module, fromlist=[function])
    return getattr(imported, function)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scriptorium", description="Document OCR fleet on DeepSeek-OCR")
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", default="cpu", help="cpu, gpu or both (comma-separated)")
    worker.add_argument("--concurrency", type=int, default=2, help="CPU worker processes (GPU workers use 1)")
    worker.add_argument("--hostname")
    worker.add_argument("--ready-file", help="written once the process (and its engine) is ready")
    worker.set_defaults(func=cmd_worker)

    beat = sub.add_parser("beat", help="run the scheduler that triggers the sweeper")
    beat.set_defaults(func=cmd_beat)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(func=cmd_migrate)

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="tenant_command", required=True
    )
    create = tenant.add_parser("create", help="create a tenant and print its first API key")
    create.add_argument("name")
    create.set_defaults(func=cmd_tenant_create)

    ingest = sub.add_parser("ingest", help="upload files to the API and print document ids")
    ingest.add_argument("paths", nargs="+")
    ingest.add_argument("--url", help="API base URL (default SCRIPTORIUM_API_URL or api.public_url)")
    ingest.add_argument("--api-key", help="default: SCRIPTORIUM_API_KEY")
    ingest.add_argument("--mode", default="")
    ingest.add_argument("--task", default="markdown", choices=["markdown", "free_ocr", "figure"])
    ingest.add_argument("--pages")
    ingest.add_argument("--no-progress", action="store_true")
    ingest.set_defaults(func=cmd_ingest)

    openapi = sub.add_parser("openapi", help="print the OpenAPI schema")
    openapi.add_argument("--output")
    openapi.set_defaults(func=cmd_openapi)

    for name, module, function, help_text in (
        ("ocr", "worker.engine.cli", "ocr_command", "run the engine locally on files, no services needed"),
        ("route", "worker.routing.cli", "route_command", "dry-run mode routing and forecast vision tokens"),
    ):
        forwarded = sub.add_parser(name, help=help_text, add_help=False)
        forwarded.add_argument("rest", nargs=argparse.REMAINDER)
        forwarded.set_defaults(forward=(module, function))

    dev = sub.add_parser("dev", help="developer tools").add_subparsers(dest="dev_command", required=True)
    tiny = dev.add_parser("tiny-checkpoint", help="write a tiny random-weight checkpoint", add_help=False)
    tiny.add_argument("rest", nargs=argparse.REMAINDER)
    tiny.set_defaults(forward=("worker.engine.cli", "tiny_checkpoint_command"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    forward = getattr(args, "forward", None)
    if forward is not None:
        command = _forward(*forward)
        return int(command(list(args.rest)))  # type: ignore[operator]
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
