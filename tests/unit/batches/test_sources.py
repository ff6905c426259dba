"""Named sources: URIs, and who may read which bucket through which source."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from scriptorium.batches.states import IntakeReason, IntakeRefused
from scriptorium.settings import Settings, SourceSettings
from scriptorium.sources import SourceRegistry, check_object_key, normalise_etag, parse_s3_uri, printable


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
