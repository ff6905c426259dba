"""Tenants and their quotas, straight in the database (operators' commands)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from scriptorium.cli.context import fail, settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from scriptorium.tenants import IssuedKey

EXIT_OK, EXIT_REFUSED = 0, 1


@contextmanager
def _transaction() -> Iterator[Session]:
    """One transaction on this command's database, committed when the block succeeds."""
    from scriptorium.db.session import make_engine, make_session_factory, transaction

    engine = make_engine(settings().db)
    try:
        with transaction(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _print_issued(issued: IssuedKey) -> None:
    click.echo(f"tenant {issued.tenant.name} ({issued.tenant.id})", err=True)
    click.echo("API key (shown once, store it now):", err=True)
    click.echo(issued.key)


@click.group()
def tenant() -> None:
    """Manage tenants and their quotas."""


@tenant.command("create")
@click.argument("name")
def tenant_create(name: str) -> int:
    """Create tenant NAME and print its first API key (on stdout, once)."""
    from scriptorium.tenants import create_tenant

    try:
        with _transaction() as session:
            issued = create_tenant(session, name)
    except ValueError as error:
        fail(str(error))
        return EXIT_REFUSED
    _print_issued(issued)
    return EXIT_OK


def limit_of(kind: type[int] | type[float]) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    """Parses a limit option: a non-negative number, or ``none`` / ``unlimited`` / ``default``."""

    def parse(_: click.Context, param: click.Parameter, text: str | None) -> int | float | None:
        if text is None or text.lower() in ("none", "unlimited", "default"):
            return None
        try:
            number = kind(text)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a number or `none`", param=param) from None
        if number < 0:
            raise click.BadParameter("a limit must not be negative", param=param)
        return number

    return parse


QUOTA_LIMITS = {  # option → tenant limit (scriptorium/quotas.py)
    "pages": "page_budget",
    "tokens": "token_budget",
    "max_concurrent": "max_concurrent_documents",
    "rate": "rate_limit_per_s",
    "burst": "rate_limit_burst",
}


def given_limits(ctx: click.Context) -> dict[str, int | float | None]:
    """The limits named on the command line (``none`` included); omitted ones stay unchanged."""
    return {
        limit: ctx.params[option]
        for option, limit in QUOTA_LIMITS.items()
        if ctx.get_parameter_source(option) is not ParameterSource.DEFAULT
    }


@tenant.command(
    "quota",
    epilog="Each limit takes a number, or `none` for unlimited (the rate limits: the default).",
)
@click.argument("name")
@click.option(
    "--pages",
    metavar="INT|none",
    callback=limit_of(int),
    help="page budget: pages the engine may read in total",
)
@click.option(
    "--tokens",
    metavar="INT|none",
    callback=limit_of(int),
    help="token budget: vision + output tokens in total",
)
@click.option(
    "--max-concurrent",
    metavar="INT|none",
    callback=limit_of(int),
    help="documents preparing or processing at once",
)
@click.option("--rate", metavar="FLOAT|none", callback=limit_of(float), help="API requests per second")
@click.option("--burst", metavar="INT|none", callback=limit_of(int), help="API requests allowed back to back")
@click.pass_context
def tenant_quota(ctx: click.Context, /, name: str, **_: object) -> int:
    """Show tenant NAME's limits and usage; with options, change them (paused documents resume)."""
    from sqlalchemy import select

    from scriptorium.db.models import Tenant
    from scriptorium.lifecycle import DispatchPlan, plan_dispatch
    from scriptorium.queueing import Publisher, create_celery
    from scriptorium.quotas import quota_of, set_limits

    current_settings = settings()
    changes = given_limits(ctx)
    with _transaction() as session:
        owner = session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none()
        if owner is None:
            fail(f"no tenant {name!r}")
            return EXIT_REFUSED
        plan = DispatchPlan()
        if changes:
            set_limits(session, owner, **changes)
            # Resume what the new limits admit now, not at the next sweep.
            limits = current_settings.limits
            plan = plan_dispatch(
                session, depth=limits.dispatch_depth, lost_after_s=limits.lost_message_after_s
            )
        current = quota_of(session, owner.id)
    if plan:
        Publisher(create_celery(current_settings)).publish(plan)
    click.echo(json.dumps({"tenant": name, **asdict(current)}, indent=2))
    return EXIT_OK
