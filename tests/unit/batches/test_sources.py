"""Named sources: URIs, and who may read which bucket through which source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from scriptorium.batches.states import IntakeReason, IntakeRefused
from scriptorium.settings import Settings, SourceSettings
from scriptorium.sources import SourceRegistry, check_object_key, normalise_etag, parse_s3_uri, printable

ROOT = Path(__file__).resolve().parents[3]


def test_uris_name_source_bucket_and_key() -> None:
    ref = parse_s3_uri("s3://Archive/scans/1931/a b.pdf")
    assert (ref.source, ref.bucket, ref.key) == ("archive", "scans", "1931/a b.pdf")
    assert parse_s3_uri("s3://archive/scans", require_key=False).key == ""
    with pytest.raises(IntakeRefused):
        parse_s3_uri("s3://archive/scans")


def _registry() -> SourceRegistry:
    return SourceRegistry(
        {
            "Archive": SourceSettings(endpoint="s3.example", secret_key=SecretStr("k"), tenants=["acme"]),
            "open": SourceSettings(endpoint="s3.example", buckets=["public"]),
        }
    )


@pytest.mark.parametrize(
    ("source", "tenant", "bucket", "reason"),
    [
        ("nope", "acme", "b", IntakeReason.UNKNOWN_SOURCE),
        ("archive", "other", "b", IntakeReason.SOURCE_NOT_ALLOWED),
        ("open", "acme", "private", IntakeReason.SOURCE_NOT_ALLOWED),
    ],
)
def test_sources_are_limited_to_their_tenants_and_buckets(
    source: str, tenant: str, bucket: str, reason: IntakeReason
) -> None:
    with pytest.raises(IntakeRefused) as refused:
        _registry().check(source, tenant_name=tenant, bucket=bucket)
    assert refused.value.reason is reason


def test_allowed_reads_pass() -> None:
    registry = _registry()
    registry.check("ARCHIVE", tenant_name="acme", bucket="anything")
    registry.check("open", tenant_name="anyone", bucket="public")


def test_sources_come_from_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTORIUM_SOURCES__ARCHIVE__ENDPOINT", "minio.internal:9000")
    monkeypatch.setenv("SCRIPTORIUM_SOURCES__ARCHIVE__ACCESS_KEY", "reader")
    monkeypatch.setenv("SCRIPTORIUM_SOURCES__ARCHIVE__SECRET_KEY", "s3cr3t")
    monkeypatch.setenv("SCRIPTORIUM_SOURCES__ARCHIVE__TENANTS", '["acme"]')
    source = Settings(_env_file=None).sources["archive"]  # type: ignore[call-arg]
    assert source.endpoint == "minio.internal:9000" and source.secret_key.get_secret_value() == "s3cr3t"
    assert source.tenants == ["acme"] and "s3cr3t" not in repr(source)


def test_etags_lose_their_quotes() -> None:
    assert normalise_etag('"abc-2"') == "abc-2" and normalise_etag(None) == ""


@pytest.mark.parametrize(
    "key",
    ["", "a\x00b", "a/\x07b", "/abs", "a//b", "a/./b", "a/../b", "..", "dir/", "k" * 1025, "é" * 513],
)
def test_keys_no_input_may_name_are_refused(key: str) -> None:
    with pytest.raises(IntakeRefused) as refused:
        check_object_key(key)
    assert refused.value.reason is IntakeReason.INVALID_OBJECT_KEY
    assert "\x00" not in refused.value.message


@pytest.mark.parametrize("key", ["a", "scans/1931/a b.pdf", "k" * 1024, "a..b/c.", "é/ü.png"])
def test_ordinary_keys_pass(key: str) -> None:
    check_object_key(key)


def test_prefixes_may_be_empty_or_end_with_a_slash_but_not_climb() -> None:
    check_object_key("", prefix=True)
    check_object_key("scans/1931/", prefix=True)
    with pytest.raises(IntakeRefused):
        check_object_key("scans/../", prefix=True)
    assert parse_s3_uri("s3://archive/scans/inbox/", require_key=False).key == "inbox/"


def test_control_characters_are_escaped_for_reports() -> None:
    assert printable("a\x00b\x1fc\x7f") == "a\\x00b\\x1fc\\x7f"


def _settings(source: SourceSettings, **storage: object) -> Settings:
    values: dict[str, object] = {"endpoint": "minio.internal:9000", "bucket": "scriptorium", **storage}
    return Settings(_env_file=None, storage=values, sources={"Shared": source})  # type: ignore[call-arg,arg-type]


@pytest.mark.parametrize(
    "source",
    [
        SourceSettings(endpoint="minio.internal:9000"),  # the same endpoint, any bucket
        SourceSettings(endpoint="http://MINIO.internal:9000/"),  # the same, written differently
        SourceSettings(endpoint="minio.internal:9000", buckets=["scans", "scriptorium"]),
        SourceSettings(endpoint="files.example.com", secure=True),  # the public endpoint below
        SourceSettings(endpoint="https://files.example.com:443", buckets=["scriptorium"]),
    ],
)
def test_a_source_that_could_read_the_internal_bucket_refuses_to_start(source: SourceSettings) -> None:
    with pytest.raises(ValueError, match="Shared") as refused:
        _settings(source, public_endpoint="https://files.example.com")
    assert "scriptorium" in str(refused.value) and "BUCKETS" in str(refused.value)


def test_loopback_names_are_one_endpoint() -> None:
    with pytest.raises(ValueError, match="Shared"):
        _settings(SourceSettings(endpoint="localhost:9000"), endpoint="127.0.0.1:9000")


@pytest.mark.parametrize(
    "source",
    [
        SourceSettings(endpoint="minio.internal:9000", buckets=["scans", "archive"]),  # other buckets only
        SourceSettings(endpoint="minio.internal:9001"),  # another port: another server
        SourceSettings(endpoint="https://minio.internal"),  # 443, not 9000
        SourceSettings(endpoint="archive.example.org:9000"),  # another host
    ],
)
def test_sources_that_cannot_reach_the_internal_bucket_are_allowed(source: SourceSettings) -> None:
    settings = _settings(source)
    assert SourceRegistry(settings.sources).names() == ["shared"]


def test_the_refusal_stops_a_process_at_start_up() -> None:
    environment = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "SCRIPTORIUM_DB__URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "SCRIPTORIUM_STORAGE__ENDPOINT": "127.0.0.1:9000",
        "SCRIPTORIUM_SOURCES__LEAKY__ENDPOINT": "localhost:9000",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "scriptorium.cli", "migrate"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode != 0
    assert "leaky" in completed.stderr.lower() and "internal" in completed.stderr
