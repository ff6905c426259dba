import base64
import hashlib
import hmac

import pytest

from scriptorium.webhooks.signing import (
    InvalidSecret,
    VerificationFailed,
    generate_secret,
    secret_key,
    sign,
    signed_headers,
    verify,
)

# The worked example of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_specification_example_signs_identically() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_generated_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(secret_key(first)) == 32


@pytest.mark.parametrize("bad", ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64!"])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSecret):
        secret_key(bad)


def test_headers_carry_one_signature_per_secret_over_id_timestamp_and_body() -> None:
    old, new = generate_secret(), generate_secret()
    headers = signed_headers([new, old], "msg_1", 1700000000, b'{"a":1}')
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"
    signatures = headers["webhook-signature"].split(" ")
    for secret, signature in zip([new, old], signatures, strict=True):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        digest = hmac.new(key, b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest()
        assert signature == "v1," + base64.b64encode(digest).decode()


def test_verify_accepts_any_matching_signature_and_refuses_others() -> None:
    old, new, stranger = generate_secret(), generate_secret(), generate_secret()
    headers = signed_headers([new, old], "msg_2", 1700000000, b"{}")
    for secret in (new, old):
        verify(
            secret,
            message_id="msg_2",
            timestamp="1700000000",
            signatures=headers["webhook-signature"],
            body=b"{}",
            now=1700000010,
        )
    with pytest.raises(VerificationFailed, match="no signature"):
        verify(
            stranger,
            message_id="msg_2",
            timestamp="1700000000",
            signatures=headers["webhook-signature"],
            body=b"{}",
            now=1700000010,
        )
    with pytest.raises(VerificationFailed, match="no signature"):
        verify(
            new,
            message_id="msg_2",
            timestamp="1700000000",
            signatures=headers["webhook-signature"],
            body=b"{ }",
            now=1700000010,
        )


def test_verify_refuses_stale_or_future_timestamps() -> None:
    secret = generate_secret()
    signature = sign(secret, "msg_3", 1700000000, b"{}")
    for now in (1700000000 + 301, 1700000000 - 301):
        with pytest.raises(VerificationFailed, match="too old or too new"):
            verify(
                secret, message_id="msg_3", timestamp="1700000000", signatures=signature, body=b"{}", now=now
            )
