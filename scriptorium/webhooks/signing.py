"""Standard Webhooks secrets and signatures.

A secret is ``whsec_`` followed by the base64 of random bytes; the HMAC key is those bytes.
A signature is ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")); several may be
sent space-separated, which is how a rotated secret keeps working during its grace period.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
DEFAULT_TOLERANCE_S = 300


class InvalidSecret(ValueError):
    """The text is not a ``whsec_`` secret."""


class VerificationFailed(Exception):
    """A received webhook does not carry a valid, fresh signature."""


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as error:
        raise InvalidSecret("a webhook secret is base64 after its prefix") from error
    if not key:
        raise InvalidSecret("a webhook secret must not be empty")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    if not signing_secrets:
        raise InvalidSecret("at least one secret is needed to sign")
    return " ".join(sign(secret, message_id, timestamp, body) for secret in signing_secrets)


def signed_headers(
    signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(signing_secrets, message_id, timestamp, body),
    }


def verify(
    secret: str,
    *,
    message_id: str,
    timestamp: str,
    signatures: str,
    body: bytes,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """What a receiver does: check freshness, then accept if any ``v1`` signature matches."""
    try:
        sent_at = int(timestamp)
    except ValueError as error:
        raise VerificationFailed("the webhook-timestamp is not an integer") from error
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_s:
        raise VerificationFailed("the webhook-timestamp is too old or too new")
    expected = sign(secret, message_id, sent_at, body).encode()
    for candidate in signatures.split():
        version, _, _ = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(candidate.encode(), expected):
            return
    raise VerificationFailed("no signature matches the secret")
