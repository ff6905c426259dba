"""The ``scriptorium`` command: the composition root of every process.

Each sub-command builds the settings once, then imports only what it runs (the API never
imports torch; ``ocr`` and ``route`` need no services).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
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


QUOTA_OPTIONS = {  # option → tenant limit (scriptorium/quotas.py)
    "pages": "page_budget",
    "tokens": "token_budget",
    "max_concurrent": "max_concurrent_documents",
    "rate": "rate_limit_per_s",
    "burst": "rate_limit_burst",
}


def _limit(kind: type[int] | type[float]) -> Callable[[str], int | float | None]:
    def parse(text: str) -> int | float | None:
        if text.lower() in ("none", "unlimited", "default"):
            return None
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError("a limit must not be negative")
        return value

    return parse


def cmd_tenant_quota(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from scriptorium.db.models import Tenant
    from scriptorium.db.session import make_engine, make_session_factory
    from scriptorium.dispatch import admit_and_dispatch
    from scriptorium.queueing import Publisher, create_celery
    from scriptorium.quotas import quota_of, set_limits
    from scriptorium.unit_of_work import UnitOfWorkFactory

    settings = _settings()
    changes = {
        limit: getattr(args, option) for option, limit in QUOTA_OPTIONS.items() if hasattr(args, option)
    }
    engine = make_engine(settings.db)
    try:
        units = UnitOfWorkFactory(make_session_factory(engine), Publisher(create_celery(settings)))
        with units.committing() as uow:
            session = uow.session
            tenant = session.execute(select(Tenant).where(Tenant.name == args.name)).scalar_one_or_none()
            if tenant is None:
                print(f"error: no tenant {args.name!r}", file=sys.stderr)
                return 1
            if changes:
                set_limits(session, tenant, **changes)
                limits = settings.limits  # resume what the new limits admit now, not at the next sweep
                admit_and_dispatch(uow, depth=limits.dispatch_depth, lost_after_s=limits.lost_message_after_s)
            current = quota_of(session, tenant.id)
    finally:
        engine.dispose()
    print(json.dumps({"tenant": args.name, **asdict(current)}, indent=2))
    return 0


def _api_access(args: argparse.Namespace) -> tuple[str, str] | None:
    key = args.api_key or os.environ.get("SCRIPTORIUM_API_KEY")
    if not key:
        print("error: pass --api-key or set SCRIPTORIUM_API_KEY", file=sys.stderr)
        return None
    return args.url or os.environ.get("SCRIPTORIUM_API_URL") or _settings().api.public_url, key


def cmd_ingest(args: argparse.Namespace) -> int:
    from scriptorium.client import ingest_paths, ingest_prefix

    access = _api_access(args)
    if access is None:
        return 2
    url, key = access
    uris = [p for p in args.paths if p.startswith("s3://")]
    if uris and len(args.paths) > 1:
        print("error: ingest one s3://source/bucket/prefix at a time, without local paths", file=sys.stderr)
        return 2
    options = {"mode": args.mode, "task": args.task, "pages": args.pages, "priority": args.priority}
    if uris:
        return ingest_prefix(
            uris[0],
            base_url=url,
            api_key=key,
            batch=args.batch,
            progress=not args.no_progress,
            watch=args.watch,
            **options,
        )
    return ingest_paths(
        [Path(p) for p in args.paths],
        base_url=url,
        api_key=key,
        progress=not args.no_progress,
        batch=args.batch,
        concurrency=args.concurrency,
        **options,
    )


def cmd_batch_status(args: argparse.Namespace) -> int:
    from scriptorium.client import batch_status

    access = _api_access(args)
    if access is None:
        return 2
    url, key = access
    return batch_status(
        args.batch_id, base_url=url, api_key=key, watch=args.watch, progress=not args.no_progress
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


def _add_ingest_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = sub.add_parser(
        "ingest",
        help="upload files (or ingest s3://source/bucket/prefix) and print document ids",
        description="With --batch NAME the files go into one batch, resumably: running the command "
        "again uploads only files whose content the batch does not have yet, then closes it.",
    )
    ingest.add_argument("paths", nargs="+", help="files, directories, or one s3://source/bucket/prefix")
    ingest.add_argument("--url", help="API base URL (default SCRIPTORIUM_API_URL or api.public_url)")
    ingest.add_argument("--api-key", help="default: SCRIPTORIUM_API_KEY")
    ingest.add_argument("--batch", help="ingest into the batch with this name (created on first use)")
    ingest.add_argument("--priority", choices=["bulk", "interactive"], help="lane (batches default to bulk)")
    ingest.add_argument("--concurrency", type=int, default=4, help="parallel uploads (default 4)")
    ingest.add_argument("--watch", action="store_true", help="for s3://…: follow the batch until it is final")
    ingest.add_argument("--mode", default="")
    ingest.add_argument("--task", default="markdown", choices=["markdown", "free_ocr", "figure"])
    ingest.add_argument("--pages")
    ingest.add_argument("--no-progress", action="store_true")
    ingest.set_defaults(func=cmd_ingest)

    batch = sub.add_parser("batch", help="inspect batches").add_subparsers(
        dest="batch_command", required=True
    )
    status = batch.add_parser("status", help="a batch's state, progress, outcomes and tokens")
    status.add_argument("batch_id")
    status.add_argument("--watch", action="store_true", help="show progress until the batch is final")
    status.add_argument("--url", help="API base URL (default SCRIPTORIUM_API_URL or api.public_url)")
    status.add_argument("--api-key", help="default: SCRIPTORIUM_API_KEY")
    status.add_argument("--no-progress", action="store_true")
    status.set_defaults(func=cmd_batch_status)


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
    quota = tenant.add_parser(
        "quota",
        help="show a tenant's limits and usage; with options, change them (paused documents resume)",
        description="Each limit takes a number, or `none` for unlimited (the rate limits: the default).",
    )
    quota.add_argument("name")
    for option, kind, what in (
        ("pages", int, "page budget: pages the engine may read in total"),
        ("tokens", int, "token budget: vision + output tokens in total"),
        ("max-concurrent", int, "documents preparing or processing at once"),
        ("rate", float, "API requests per second"),
        ("burst", int, "API requests allowed back to back"),
    ):
        quota.add_argument(f"--{option}", type=_limit(kind), default=argparse.SUPPRESS, help=what)
    quota.set_defaults(func=cmd_tenant_quota)

    _add_ingest_commands(sub)

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
