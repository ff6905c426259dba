"""Named S3 sources that batches and watches read from.

An operator configures each source once (``SCRIPTORIUM_SOURCES__<NAME>__ENDPOINT``, ``__ACCESS_KEY``,
``__SECRET_KEY`` …); batches, manifests and watches refer to it by name only, as
``s3://<source>/<bucket>/<key>``, so credentials never reach a database row or a client. A source
may be limited to some tenants and some buckets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import urllib3
from minio.error import S3Error

from scriptorium.batches.states import IntakeReason, IntakeRefused
from scriptorium.errors import DependencyUnavailable
from scriptorium.settings import SourceSettings
from scriptorium.storage import make_s3_client

URI_SCHEME = "s3://"
MAX_KEY_BYTES = 1024  # the S3 limit on an object key, in UTF-8 bytes
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MISSING_BUCKET = {"NoSuchBucket"}
_MISSING_OBJECT = {"NoSuchKey", "NoSuchObject", "NotFound"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
_UNREACHABLE = (OSError, urllib3.exceptions.HTTPError)


class SourceUnavailable(DependencyUnavailable):
    """The source could not be reached or answered with a server error; worth trying again later."""

    def __init__(self, message: str) -> None:
        super().__init__("source_unavailable", message)


@dataclass(frozen=True)
class ObjectRef:
    """``s3://source/bucket/key``; for a prefix the key is the prefix (possibly empty)."""

    source: str
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}{self.source}/{self.bucket}/{self.key}"


@dataclass(frozen=True)
class ListedObject:
    key: str
    etag: str
    size: int


def printable(text: str) -> str:
    """``text`` with control characters (NUL included) escaped, safe to store and report."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def check_object_key(key: str, *, prefix: bool = False) -> None:
    """Raise IntakeRefused(invalid_object_key) for a key no input may name: control characters,
    an absolute key, ``.``, ``..`` or empty segments, a directory marker, or more than S3 allows.
    A ``prefix`` may be empty and may end with ``/``."""
    shown = printable(key[:200])
    if _CONTROL.search(key):
        raise IntakeRefused(IntakeReason.INVALID_OBJECT_KEY, f"key {shown!r} contains control characters")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise IntakeRefused(
            IntakeReason.INVALID_OBJECT_KEY, f"key {shown!r} is longer than {MAX_KEY_BYTES} bytes"
        )
    if not key:
        if prefix:
            return
        raise IntakeRefused(IntakeReason.INVALID_OBJECT_KEY, "the key is empty")
    if key.startswith("/"):
        raise IntakeRefused(IntakeReason.INVALID_OBJECT_KEY, f"key {shown!r} is absolute")
    segments = key.split("/")
    if prefix and segments[-1] == "":
        segments.pop()
    if any(segment in ("", ".", "..") for segment in segments):
        what = "a directory, not an object" if key.endswith("/") else "an empty, '.' or '..' segment"
        raise IntakeRefused(IntakeReason.INVALID_OBJECT_KEY, f"key {shown!r} has {what}")


def parse_s3_uri(uri: str, *, require_key: bool = True) -> ObjectRef:
    """Split ``s3://source/bucket/key``; raises IntakeRefused (invalid_options) when malformed and
    (invalid_object_key) when the key is one no input may name (:func:`check_object_key`)."""
    if not uri.startswith(URI_SCHEME):
        raise IntakeRefused(
            IntakeReason.INVALID_OPTIONS, f"{printable(uri[:200])!r} is not an s3://source/bucket/key URI"
        )
    source, _, rest = uri[len(URI_SCHEME) :].partition("/")
    bucket, _, key = rest.partition("/")
    if not source or not bucket or (require_key and not key) or _CONTROL.search(source + bucket):
        expected = "s3://source/bucket/key" if require_key else "s3://source/bucket/prefix"
        raise IntakeRefused(
            IntakeReason.INVALID_OPTIONS, f"{printable(uri[:200])!r} is not of the form {expected}"
        )
    check_object_key(key, prefix=not require_key)
    return ObjectRef(source=source.lower(), bucket=bucket, key=key)


def normalise_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"')


class Source:
    """One configured S3 endpoint: listing and streaming reads, nothing else."""

    def __init__(self, name: str, settings: SourceSettings) -> None:
        self.name = name
        self._settings = settings
        self._client = make_s3_client(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,
        )

    def list_after(self, bucket: str, prefix: str, *, after: str | None, limit: int) -> list[ListedObject]:
        """Up to ``limit`` objects under ``prefix`` whose keys sort after ``after``, in key order."""
        found: list[ListedObject] = []
        try:
            for obj in self._client.list_objects(
                bucket, prefix=prefix or None, recursive=True, start_after=after or None
            ):
                if obj.is_dir or not obj.object_name or obj.object_name.endswith("/"):
                    continue
                found.append(
                    ListedObject(key=obj.object_name, etag=normalise_etag(obj.etag), size=int(obj.size or 0))
                )
                if len(found) >= limit:
                    break
        except S3Error as error:
            raise _refusal(error, f"{bucket}/{prefix}") from error
        except ValueError as error:  # the client refuses the bucket name or prefix itself
            raise IntakeRefused(
                IntakeReason.INVALID_OBJECT_KEY, f"{printable(prefix[:200])!r}: {error}"
            ) from error
        except _UNREACHABLE as error:
            raise SourceUnavailable(f"source {self.name!r} is unreachable: {error}") from error
        return found

    @contextmanager
    def open(self, bucket: str, key: str) -> Iterator[IO[bytes]]:
        """A streaming read of one object; the caller reads it in chunks and never holds it whole."""
        response: Any = None
        try:
            response = self._client.get_object(bucket, key)
        except S3Error as error:
            raise _refusal(error, f"{bucket}/{key}") from error
        except ValueError as error:  # the client refuses the bucket name or key itself
            raise IntakeRefused(
                IntakeReason.INVALID_OBJECT_KEY, f"{printable(key[:200])!r}: {error}"
            ) from error
        except _UNREACHABLE as error:
            raise SourceUnavailable(f"source {self.name!r} is unreachable: {error}") from error
        try:
            yield response
        finally:
            response.close()
            response.release_conn()


def _refusal(error: S3Error, what: str) -> Exception:
    if error.code in _MISSING_BUCKET:
        return IntakeRefused(IntakeReason.SOURCE_BUCKET_MISSING, f"the source has no bucket for {what}")
    if error.code in _MISSING_OBJECT:
        return IntakeRefused(IntakeReason.SOURCE_OBJECT_MISSING, f"the source has no object {what}")
    if error.code in _DENIED:
        return IntakeRefused(IntakeReason.SOURCE_ACCESS_DENIED, f"the source refused access to {what}")
    return SourceUnavailable(f"the source answered {error.code} for {what}")


class SourceRegistry:
    """The configured sources, checked against the tenant and bucket asking for them."""

    def __init__(self, sources: dict[str, SourceSettings]) -> None:
        self._settings = {name.lower(): value for name, value in sources.items()}
        self._clients: dict[str, Source] = {}

    def names(self) -> list[str]:
        return sorted(self._settings)

    def check(self, name: str, *, tenant_name: str, bucket: str) -> None:
        """Raise IntakeRefused unless ``tenant_name`` may read ``bucket`` through source ``name``."""
        settings = self._settings.get(name.lower())
        if settings is None:
            known = ", ".join(self.names()) or "none are configured"
            raise IntakeRefused(IntakeReason.UNKNOWN_SOURCE, f"no source named {name!r} ({known})")
        if settings.tenants and tenant_name not in settings.tenants:
            raise IntakeRefused(
                IntakeReason.SOURCE_NOT_ALLOWED, f"source {name!r} is not open to this tenant"
            )
        if settings.buckets and bucket not in settings.buckets:
            raise IntakeRefused(
                IntakeReason.SOURCE_NOT_ALLOWED, f"source {name!r} does not serve bucket {bucket!r}"
            )

    def get(self, name: str, *, tenant_name: str, bucket: str) -> Source:
        self.check(name, tenant_name=tenant_name, bucket=bucket)
        key = name.lower()
        if key not in self._clients:
            self._clients[key] = Source(key, self._settings[key])
        return self._clients[key]
