"""API keys without SQL, on real Postgres: issue, list, revoke and rotate through the domain,
the ``scriptorium tenant key`` commands and ``POST /v1/keys/rotate``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.api_keys import (
    ApiKeyAlreadyRotated,
    ApiKeyInactive,
    ApiKeyNotFound,
    KeyRefused,
    KeyState,
    TenantNotFound,
    authenticate,
    create_key,
    list_keys,
    revoke_key,
    rotate_key,
)
from scriptorium.cli import cli
from scriptorium.db.models import ApiKey
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.support import builders

pytestmark = pytest.mark.integration
GRACE_S = 3  # long enough for the requests made within it on a busy machine


def _refusal(sessions: sessionmaker[Session], key: str) -> str | None:
    """The code a key is refused with, or None when it authenticates."""
    with sessions.begin() as session:
        try:
            authenticate(session, key)
        except KeyRefused as refused:
            return refused.code
    return None


def _new_tenant(sessions: sessionmaker[Session]) -> tuple[str, str]:
    with sessions.begin() as session:
        issued = builders.tenant(session)
        return issued.tenant.name, issued.key


def test_another_key_for_a_tenant_then_revoking_one_leaves_the_other(sessions: sessionmaker[Session]) -> None:
    name, first = _new_tenant(sessions)
    with sessions.begin() as session:
        second = create_key(session, name)
    assert _refusal(sessions, first) is None and _refusal(sessions, second.key) is None

    with sessions.begin() as session:
        revoked = revoke_key(session, second.key_id)
    assert revoked.state is KeyState.REVOKED and revoked.revoked_at is not None
    assert _refusal(sessions, second.key) == "api_key_revoked"
    assert _refusal(sessions, first) is None

    with sessions.begin() as session:
        again = revoke_key(session, second.key_id)  # idempotent: the first revocation time stays
        keys = list_keys(session, name)
    assert again.revoked_at == revoked.revoked_at
    assert [(key.state, key.prefix in first) for key in keys] == [
        (KeyState.ACTIVE, True),
        (KeyState.REVOKED, False),
    ]
    assert keys[0].last_used_at is not None and keys[1].created_at >= keys[0].created_at


def test_unknown_tenants_keys_and_secrets_are_refused(sessions: sessionmaker[Session]) -> None:
    name, key = _new_tenant(sessions)
    with sessions.begin() as session, pytest.raises(TenantNotFound):
        create_key(session, f"missing-{uuid.uuid4().hex[:6]}")
    with sessions.begin() as session, pytest.raises(ApiKeyNotFound):
        revoke_key(session, uuid.uuid4())
    prefix = key.split("_")[1]
    assert _refusal(sessions, f"sk_{prefix}_wrong-secret") == "unauthorized"
    assert _refusal(sessions, "not-a-key") == "unauthorized"
    with sessions.begin() as session:
        assert [key.state for key in list_keys(session, name)] == [KeyState.ACTIVE]


def test_a_rotated_key_expires_after_its_grace_and_cannot_rotate_again(
    sessions: sessionmaker[Session],
) -> None:
    _, old = _new_tenant(sessions)
    with sessions.begin() as session:
        old_id = session.execute(select(ApiKey.id).where(ApiKey.prefix == old.split("_")[1])).scalar_one()
        rotated = rotate_key(session, old_id, grace=timedelta(0))
    assert _refusal(sessions, old) == "api_key_expired"
    assert _refusal(sessions, rotated.key) is None
    with sessions.begin() as session, pytest.raises(ApiKeyInactive):
        rotate_key(session, old_id, grace=timedelta(hours=1))  # expired

    with sessions.begin() as session:
        newer = rotate_key(session, rotated.key_id, grace=timedelta(hours=1))
    with sessions.begin() as session, pytest.raises(ApiKeyAlreadyRotated):
        rotate_key(session, rotated.key_id, grace=timedelta(hours=1))  # in its grace period
    assert _refusal(sessions, rotated.key) is None and _refusal(sessions, newer.key) is None

    with sessions.begin() as session:
        revoke_key(session, rotated.key_id)
    with sessions.begin() as session, pytest.raises(ApiKeyInactive):
        rotate_key(session, rotated.key_id, grace=timedelta(hours=1))


def _scriptorium(env: dict[str, str], *arguments: str) -> Result:
    values = {k: v for k, v in env.items() if k.startswith("SCRIPTORIUM_")}
    return CliRunner().invoke(cli, list(arguments), env=values, prog_name="scriptorium")


def test_the_tenant_key_commands(env: dict[str, str], sessions: sessionmaker[Session]) -> None:
    name = f"cli-keys-{uuid.uuid4().hex[:8]}"
    created = _scriptorium(env, "tenant", "create", name)
    assert created.exit_code == 0, created.output
    first = created.stdout.strip()
    duplicate = _scriptorium(env, "tenant", "create", name)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr

    issued = _scriptorium(env, "tenant", "key", "create", name)
    assert issued.exit_code == 0, issued.output
    second = issued.stdout.strip()  # stdout holds only the secret
    assert second.startswith("sk_") and second != first
    assert "shown once" in issued.stderr
    assert _refusal(sessions, second) is None

    listed = _scriptorium(env, "tenant", "key", "list", name, "--json")
    assert listed.exit_code == 0, listed.output
    keys = json.loads(listed.stdout)
    assert [key["state"] for key in keys] == ["active", "active"]
    assert all(key["prefix"] in (first + second) for key in keys)
    assert first not in listed.stdout and second not in listed.stdout  # secrets are never shown again

    second_id = next(key["id"] for key in keys if key["prefix"] in second)
    revoked = _scriptorium(env, "tenant", "key", "revoke", second_id)
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["state"] == "revoked"
    assert _refusal(sessions, second) == "api_key_revoked"

    table = _scriptorium(env, "tenant", "key", "list", name)
    assert table.exit_code == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["id", "prefix", "state", "created", "last", "used", "until"]
    assert sorted(row.split()[2] for row in rows) == ["active", "revoked"]

    first_id = next(key["id"] for key in keys if key["prefix"] in first)
    rotated = _scriptorium(env, "tenant", "key", "rotate", first_id, "--grace", "0")
    assert rotated.exit_code == 0, rotated.output
    assert _refusal(sessions, first) == "api_key_expired"
    assert _refusal(sessions, rotated.stdout.strip()) is None


def test_the_tenant_key_commands_refuse_unknown_names_and_ids(env: dict[str, str]) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    for arguments in (
        ("tenant", "key", "create", missing),
        ("tenant", "key", "list", missing),
        ("tenant", "key", "revoke", str(uuid.uuid4())),
        ("tenant", "key", "rotate", str(uuid.uuid4())),
        ("tenant", "quota", missing),
    ):
        result = _scriptorium(env, *arguments)
        assert result.exit_code == 1, arguments
        assert result.stderr.startswith("error: no "), result.stderr
    assert _scriptorium(env, "tenant", "key", "revoke", "not-a-uuid").exit_code == 2


@pytest.fixture(scope="module")
def client(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    short_grace = settings.model_copy(
        update={"api": settings.api.model_copy(update={"key_rotation_grace_s": GRACE_S})}
    )
    with TestClient(create_app(short_grace)) as test_client:
        yield test_client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_rotation_through_the_api(client: TestClient, sessions: sessionmaker[Session]) -> None:
    name, old = _new_tenant(sessions)

    answer = client.post("/v1/keys/rotate", headers=_auth(old))

    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    new = body["key"]
    assert new.startswith(f"sk_{body['prefix']}_")
    assert client.get("/v1/documents", headers=_auth(new)).status_code == 200
    assert client.get("/v1/documents", headers=_auth(old)).status_code == 200  # within the grace period
    again = client.post("/v1/keys/rotate", headers=_auth(old))
    assert again.status_code == 409 and again.json()["error"]["code"] == "api_key_already_rotated"
    with sessions.begin() as session:
        states = {key.prefix: key.state for key in list_keys(session, name)}
    assert states == {old.split("_")[1]: KeyState.EXPIRING, body["prefix"]: KeyState.ACTIVE}

    expires_at = datetime.fromisoformat(body["previous"]["expires_at"])
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.2)

    expired = client.get("/v1/documents", headers=_auth(old))
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "api_key_expired"
    assert expired.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/documents", headers=_auth(new)).status_code == 200
    assert body["previous"]["id"] != body["id"]


def test_revoked_and_unknown_keys_answer_401_with_their_code(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    name, key = _new_tenant(sessions)
    with sessions.begin() as session:
        [info] = list_keys(session, name)
        revoke_key(session, info.id)

    revoked = client.get("/v1/documents", headers=_auth(key))
    unknown = client.get("/v1/documents", headers=_auth("sk_000000000000_nothing"))

    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "api_key_revoked"
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/keys/rotate", headers=_auth(key)).status_code == 401
