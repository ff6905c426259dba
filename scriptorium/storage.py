"""Object storage over the plain S3 API (MinIO in deployment, any S3 endpoint works).

Key layout, per tenant: ``{tenant}/raw/{document}/source`` for what was uploaded,
``{tenant}/pages/{document}/{page:05d}.png`` for rasterised pages, and
``{tenant}/results/{document}/…`` for figure crops and assembled results.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any, BinaryIO
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from scriptorium.errors import DependencyUnavailable, DomainError, ReasonCode
from scriptorium.settings import StorageSettings

PART_SIZE = 16 * 1024 * 1024
_FAILURES = (S3Error, OSError, urllib3.exceptions.HTTPError)


class UploadTooLarge(DomainError):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(ReasonCode.TOO_LARGE, f"uploads are limited to {limit} bytes")
        self.limit = limit


class StorageUnavailable(DependencyUnavailable):
    """The object store could not be reached or refused the request; ``detail`` says how."""

    def __init__(self, detail: str) -> None:
        super().__init__(ReasonCode.STORAGE, "object storage is unavailable; retry later")
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


def raw_key(tenant_id: uuid.UUID, document_id: uuid.UUID) -> str:
    return f"{tenant_id}/raw/{document_id}/source"


def page_image_key(tenant_id: uuid.UUID, document_id: uuid.UUID, page_no: int) -> str:
    return f"{tenant_id}/pages/{document_id}/{page_no:05d}.png"


def figure_key(tenant_id: uuid.UUID, document_id: uuid.UUID, name: str) -> str:
    return f"{tenant_id}/results/{document_id}/{name}"


def result_key(tenant_id: uuid.UUID, document_id: uuid.UUID, filename: str) -> str:
    return f"{tenant_id}/results/{document_id}/{filename}"


class _HashingLimitedReader(io.RawIOBase):
    """Reads from a stream while hashing and counting, refusing to go past ``limit`` bytes."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self._source = source
        self._limit = limit
        self.size = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size if size is not None and size >= 0 else PART_SIZE)
        if not chunk:
            return b""
        self.size += len(chunk)
        if self.size > self._limit:
            raise UploadTooLarge(self._limit)
        self.digest.update(chunk)
        return bytes(chunk)


def make_s3_client(
    endpoint: str, *, access_key: str, secret_key: str, secure: bool, region: str | None
) -> Minio:
    """A client for any S3 endpoint (``host:port`` or a URL whose scheme sets TLS), with bounded retries."""
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        endpoint, secure = parts.netloc, parts.scheme == "https"
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=120),
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(
        endpoint,
        http_client=http,
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        region=region or "us-east-1",
    )


class ObjectStore:
    def __init__(self, settings: StorageSettings) -> None:
        self._settings = settings
        self._bucket = settings.bucket
        self._client = self._make_client(settings.endpoint)
        public = settings.public_endpoint
        self._signer = self._make_client(public) if public else self._client

    def _make_client(self, endpoint: str) -> Minio:
        settings = self._settings
        return make_s3_client(
            endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    def ensure_bucket(self) -> bool:
        """Create the bucket when it is missing; True when this call created it. Safe to repeat
        and to race: a bucket made meanwhile by someone else counts as existing."""
        try:
            if self._client.bucket_exists(self._bucket):
                return False
            self._client.make_bucket(self._bucket)
        except S3Error as error:
            if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StorageUnavailable(str(error)) from error
            return False
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error
        return True

    def ping(self) -> None:
        """Raise StorageUnavailable unless the bucket answers."""
        try:
            if not self._client.bucket_exists(self._bucket):
                raise StorageUnavailable(f"bucket {self._bucket!r} does not exist")
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error

    def put_stream(
        self, key: str, stream: IO[bytes], *, limit: int, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        """Stream ``stream`` to ``key`` in parts, hashing as it goes; never holds the whole file."""
        reader = _HashingLimitedReader(stream, limit)
        try:
            self._client.put_object(
                self._bucket,
                key,
                reader,  # type: ignore[arg-type]
                length=-1,
                part_size=PART_SIZE,
                content_type=content_type,
            )
        except UploadTooLarge:
            self.delete(key)
            raise
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error
        return StoredObject(key=key, size=reader.size, sha256=reader.digest.hexdigest())

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        try:
            self._client.put_object(self._bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error

    def get_bytes(self, key: str) -> bytes:
        response = None
        try:
            response = self._client.get_object(self._bucket, key)
            return bytes(response.read())
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def download_to(self, key: str, target: BinaryIO) -> int:
        """Copy an object into an open binary file in chunks; returns the byte count."""
        response = None
        written = 0
        try:
            response = self._client.get_object(self._bucket, key)
            for chunk in response.stream(PART_SIZE):
                target.write(chunk)
                written += len(chunk)
            return written
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self._client.stat_object(self._bucket, key)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise StorageUnavailable(str(error)) from error
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error
        return True

    def presigned_get(self, key: str, *, filename: str | None = None) -> str:
        headers: dict[str, Any] | None = None
        if filename:
            headers = {"response-content-disposition": f'attachment; filename="{filename}"'}
        return str(
            self._signer.presigned_get_object(
                self._bucket,
                key,
                expires=timedelta(seconds=self._settings.presign_ttl_s),
                response_headers=headers,
            )
        )

    def delete(self, key: str) -> None:
        try:
            self._client.remove_object(self._bucket, key)
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error

    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects in bulk requests; keys that do not exist are no error."""
        try:
            errors = list(self._client.remove_objects(self._bucket, (DeleteObject(key) for key in keys)))
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error
        if errors:
            raise StorageUnavailable(f"{len(errors)} of {len(keys)} objects could not be deleted")

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were removed."""
        try:
            names = [
                obj.object_name for obj in self._client.list_objects(self._bucket, prefix, recursive=True)
            ]
            errors = list(self._client.remove_objects(self._bucket, (DeleteObject(n) for n in names if n)))
        except _FAILURES as error:
            raise StorageUnavailable(str(error)) from error
        if errors:
            raise StorageUnavailable(f"{len(errors)} objects under {prefix!r} could not be deleted")
        return len(names)
