from pathlib import Path

import pytest

from scriptorium.settings import Environment, Settings, env_variables

ROOT = Path(__file__).resolve().parents[3]


def _parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_env_example_lists_exactly_the_variables_the_settings_read() -> None:
    documented = _parse_env_file(ROOT / ".env.example")
    assert set(documented) == set(env_variables())


def test_env_example_values_are_the_defaults_and_parse() -> None:
    documented = _parse_env_file(ROOT / ".env.example")
    assert documented == env_variables()
    settings = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings.prepare.dpi == 144
    assert settings.engine.max_new_tokens is None
    assert settings.engine.ngram_whitelist is None  # empty: the served model profile's guard applies


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTORIUM_LIMITS__LEASE_S", "7")
    monkeypatch.setenv("SCRIPTORIUM_ENGINE__MAX_CROPS", "9")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.limits.lease_s == 7
    assert settings.engine.max_crops == 9


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(ValueError, match="SCRIPTORIUM_SECRET_KEY"):
        Settings(_env_file=None, environment=Environment.PRODUCTION)  # type: ignore[call-arg]


def test_production_starts_with_real_secrets() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment=Environment.PRODUCTION,
        secret_key="s" * 40,
        storage={"secret_key": "t" * 40},
    )
    assert settings.json_logs is True


def test_development_logs_are_readable_by_default() -> None:
    assert Settings(_env_file=None).json_logs is False  # type: ignore[call-arg]
