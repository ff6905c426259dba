import pytest
from pydantic import ValidationError

from scriptorium.settings import Settings, WebhookSettings


def test_defaults_follow_the_issue() -> None:
    settings = WebhookSettings()
    assert (settings.connect_timeout_s, settings.total_timeout_s) == (5.0, 15.0)
    assert settings.retry_schedule_s == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert settings.allow_http is False and settings.allowed_networks == []


def test_environment_variables_configure_the_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTORIUM_WEBHOOKS__ALLOWED_NETWORKS", '["127.0.0.1/32", "::1"]')
    monkeypatch.setenv("SCRIPTORIUM_WEBHOOKS__RETRY_SCHEDULE_S", "[1, 2]")
    monkeypatch.setenv("SCRIPTORIUM_WEBHOOKS__ALLOW_HTTP", "true")
    settings = Settings(_env_file=None).webhooks
    assert settings.allowed_networks == ["127.0.0.1/32", "::1"]
    assert settings.retry_schedule_s == [1, 2] and settings.allow_http


@pytest.mark.parametrize(
    "fields",
    [
        {"allowed_networks": ["localhost"]},
        {"connect_timeout_s": 20.0},
        {"claim_lease_s": 15},
        {"retry_jitter": 1.0},
        {"retry_schedule_s": [5, -1]},
    ],
)
def test_inconsistent_values_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WebhookSettings.model_validate(fields)
