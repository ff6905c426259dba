"""Tenants, their quotas and their API keys, straight in the database (operators' commands)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from scriptorium.cli.context import fail, settings

if TYPE_CHECKING:
    from scriptorium.api_keys import IssuedKey, KeyInfo
    from scriptorium.unit_of_work import UnitOfWork

EXIT_OK, EXIT_REFUSED = 0, 1


@contextmanager
def _unit_of_work() -> Iterator[UnitOfWork]:
    """One unit of work on this command's database and broker, committed when the block succeeds."""
    from scriptorium.db.session import make_engine, make_session_factory
    from scriptorium.queueing import Publisher, create_celery
    from scriptorium.unit_of_work import UnitOfWorkFactory

    engine = make_engine(settings().db)
    try:
        units = UnitOfWorkFactory(make_session_factory(engine), Publisher(create_celery(settings())))
        with units.committing() as uow:
            yield uow
    finally:
        engine.dispose()


def _print_issued(issued: IssuedKey) -> None:
    click.echo(f"tenant {issued.tenant.name} ({issued.tenant.id}), key {issued.key_id}", err=True)
    click.echo("API key (shown once, store it now):", err=True)
    click.echo(issued.key)


@click.group()
def tenant() -> None:
    """Manage tenants, their quotas and API keys."""


@tenant.command("create")
@click.argument("name")
@click.option(
    "--model",
    metavar="FAMILY",
    help="the tenant's default model (deepseek-ocr, unlimited-ocr); default: the fleet's models.default",
)
def tenant_create(name: str, model: str | None) -> int:
    """Create tenant NAME and print its first API key (on stdout, once)."""
    from scriptorium.model_choice import ModelRejected
    from scriptorium.tenants import create_tenant

    try:
        with _unit_of_work() as uow:
            session = uow.session
            issued = create_tenant(session, name, default_model=model, models=settings().models)
    except ModelRejected as error:
        fail(f"{error.code}: {error.message}")
        return EXIT_REFUSED
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
    short_help="Show or change a tenant's limits.",
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
    from scriptorium.api_keys import TenantNotFound, tenant_named
    from scriptorium.dispatch import admit_and_dispatch
    from scriptorium.quotas import quota_of, set_limits

    changes = given_limits(ctx)
    try:
        with _unit_of_work() as uow:
            owner = tenant_named(uow.session, name)
            if changes:
                set_limits(uow.session, owner, **changes)
                # Resume what the new limits admit now, not at the next sweep.
                limits = settings().limits
                admit_and_dispatch(
                    uow,
                    depth=limits.dispatch_depth,
                    lost_after_s=limits.lost_message_after_s,
                    batch_pages=settings().engine.max_batch_pages,
                )
            current = quota_of(uow.session, owner.id)
    except TenantNotFound as error:
        fail(error.message)
        return EXIT_REFUSED
    click.echo(json.dumps({"tenant": name, **asdict(current)}, indent=2))
    return EXIT_OK


@tenant.command("model", short_help="Show or set a tenant's default model.")
@click.argument("name")
@click.argument("model", required=False, metavar="[FAMILY|none]")
def tenant_model(name: str, model: str | None) -> int:
    """Show tenant NAME's default model as JSON; with FAMILY (deepseek-ocr, unlimited-ocr), set it,
    or with `none` leave it to the fleet's models.default. Documents, batches and watches that name
    a model of their own keep it; the change applies to documents accepted from now on."""
    from scriptorium.api_keys import TenantNotFound, tenant_named
    from scriptorium.model_choice import ModelRejected
    from scriptorium.tenants import effective_default_model, set_default_model

    models = settings().models
    try:
        with _unit_of_work() as uow:
            owner = tenant_named(uow.session, name)
            if model is not None:
                set_default_model(owner, None if model.lower() in ("none", "default") else model, models)
                uow.session.flush()
            shown = {
                "tenant": name,
                "default_model": owner.default_model,
                "effective_model": effective_default_model(owner, models).value,
                "served": [family.value for family in models.served],
            }
    except TenantNotFound as error:
        fail(error.message)
        return EXIT_REFUSED
    except ModelRejected as error:
        fail(f"{error.code}: {error.message}")
        return EXIT_REFUSED
    click.echo(json.dumps(shown, indent=2))
    return EXIT_OK


USAGE_GROUPS = ("day", "mode", "model", "batch", "document")  # scriptorium.usage.GroupBy


@tenant.command("usage", short_help="A tenant's usage bill, split by model.")
@click.argument("name")
@click.option("--from", "start", type=click.DateTime(), help="inclusive, UTC (default: --to minus 30 days)")
@click.option("--to", "end", type=click.DateTime(), help="exclusive, UTC (default: now)")
@click.option("--group-by", type=click.Choice(USAGE_GROUPS), default="model", show_default=True)
@click.option("--model", metavar="FAMILY", help="only this model family's usage")
@click.option("--csv", "as_csv", is_flag=True, help="the lines as CSV instead of JSON")
def tenant_usage(
    *,
    name: str,
    start: datetime | None,
    end: datetime | None,
    group_by: str,
    model: str | None,
    as_csv: bool,
) -> int:
    """Tenant NAME's usage from the ledger, as GET /v1/usage reports it: lines per group, the split by
    model family and the total (JSON), or the lines alone (CSV)."""
    from scriptorium.api_keys import TenantNotFound, tenant_named
    from scriptorium.errors import DomainError
    from scriptorium.model_choice import known_model
    from scriptorium.usage import GroupBy, lines_as_csv, usage_lines, usage_total, usage_window

    grouping = GroupBy(group_by)
    try:
        family = None if model is None else known_model(model).value
        start, end = usage_window(start, end)
        with _unit_of_work() as uow:
            owner_id = tenant_named(uow.session, name).id
            lines = usage_lines(uow.session, owner_id, start=start, end=end, group_by=grouping, model=family)
            models = usage_lines(
                uow.session, owner_id, start=start, end=end, group_by=GroupBy.MODEL, model=family
            )
            total = usage_total(uow.session, owner_id, start=start, end=end, model=family)
    except TenantNotFound as error:
        fail(error.message)
        return EXIT_REFUSED
    except DomainError as error:  # an unknown model, or an empty window
        fail(f"{error.code}: {error.message}")
        return EXIT_REFUSED
    if as_csv:
        click.echo(lines_as_csv(lines, grouping), nl=False)
        return EXIT_OK
    report = {
        "tenant": name,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "group_by": grouping.value,
        "model": family,
        "lines": [line.as_dict() for line in lines],
        "models": [line.as_dict() for line in models],
        "total": total.as_dict(),
    }
    click.echo(json.dumps(report, indent=2))
    return EXIT_OK


@tenant.group("key", short_help="Issue, list, rotate and revoke API keys.")
def tenant_key() -> None:
    """Issue, list, rotate and revoke a tenant's API keys (only their hashes are stored)."""


@tenant_key.command("create", short_help="Issue another API key for a tenant (the secret is printed once).")
@click.argument("name")
def key_create(name: str) -> int:
    """Issue another API key for tenant NAME; prints the secret on stdout, once."""
    from scriptorium.api_keys import TenantNotFound, create_key

    try:
        with _unit_of_work() as uow:
            session = uow.session
            issued = create_key(session, name)
    except TenantNotFound as error:
        fail(error.message)
        return EXIT_REFUSED
    _print_issued(issued)
    return EXIT_OK


def _moment(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _key_table(keys: list[KeyInfo]) -> str:
    lines = [f"{'id':<36}  {'prefix':<12}  {'state':<8}  {'created':<20}  {'last used':<20}  until"]
    for key in keys:
        until = key.revoked_at if key.revoked_at else key.expires_at
        lines.append(
            f"{key.id!s:<36}  {key.prefix:<12}  {key.state.value:<8}  {_moment(key.created_at):<20}  "
            f"{_moment(key.last_used_at):<20}  {_moment(until)}"
        )
    return "\n".join(lines)


@tenant_key.command("list", short_help="List a tenant's keys and their states.")
@click.argument("name")
@click.option("--json", "json_output", is_flag=True, help="a JSON array instead of a table")
def key_list(name: str, json_output: bool) -> int:
    """List tenant NAME's keys: id, prefix, state, created, last used, revoked or expiring at."""
    from scriptorium.api_keys import TenantNotFound, list_keys

    try:
        with _unit_of_work() as uow:
            session = uow.session
            keys = list_keys(session, name)
    except TenantNotFound as error:
        fail(error.message)
        return EXIT_REFUSED
    click.echo(json.dumps([key.as_dict() for key in keys], indent=2) if json_output else _key_table(keys))
    return EXIT_OK


@tenant_key.command("revoke", short_help="Revoke a key: it stops authenticating at once.")
@click.argument("key_id", type=click.UUID)
def key_revoke(key_id: uuid.UUID) -> int:
    """Revoke API key KEY_ID (from `tenant key list`): it stops authenticating at once."""
    from scriptorium.api_keys import ApiKeyNotFound, revoke_key

    try:
        with _unit_of_work() as uow:
            session = uow.session
            revoked = revoke_key(session, key_id)
    except ApiKeyNotFound as error:
        fail(error.message)
        return EXIT_REFUSED
    click.echo(json.dumps(revoked.as_dict(), indent=2))
    return EXIT_OK


@tenant_key.command("rotate", short_help="Replace a key; the old one works for a grace period.")
@click.argument("key_id", type=click.UUID)
@click.option(
    "--grace",
    type=click.IntRange(min=0),
    help="seconds the old key keeps working (default: api.key_rotation_grace_s)",
)
def key_rotate(key_id: uuid.UUID, grace: int | None) -> int:
    """Replace API key KEY_ID: prints the new secret once; the old key expires after the grace period."""
    from scriptorium.api_keys import ApiKeyError, rotate_key

    grace_s = settings().api.key_rotation_grace_s if grace is None else grace
    try:
        with _unit_of_work() as uow:
            session = uow.session
            issued = rotate_key(session, key_id, grace=timedelta(seconds=grace_s))
    except ApiKeyError as error:
        fail(error.message)
        return EXIT_REFUSED
    click.echo(f"key {key_id} keeps working for {grace_s} s", err=True)
    _print_issued(issued)
    return EXIT_OK
