"""Behaviour every command shares: settings read once, usage errors before any network or database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scriptorium.cli import cli, context
from scriptorium.settings import Settings


def scriptorium(*arguments: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(arguments), env=env, prog_name="scriptorium")


def test_a_command_reads_the_settings_once(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Settings] = []
    real = context.load_settings

    def counting() -> Settings:
        loaded.append(real())
        return loaded[-1]

    monkeypatch.setattr(context, "load_settings", counting)
    vector = corpus / "bad-input" / "odd" / "vector.pdf"

    assert scriptorium("route", str(vector), str(vector), "--json").exit_code == 0
    assert len(loaded) == 1
    assert scriptorium("route", "--help").exit_code == 0
    assert len(loaded) == 1  # --help reads nothing


@pytest.mark.parametrize("command", [["ingest", "some-file.pdf"], ["batch", "status", "0a1b"]])
def test_the_api_commands_need_a_key(command: list[str]) -> None:
    result = scriptorium(*command, env={"SCRIPTORIUM_API_KEY": None})
    assert result.exit_code == 2
    assert result.stderr == "error: pass --api-key or set SCRIPTORIUM_API_KEY\n"


def test_an_s3_prefix_is_ingested_alone() -> None:
    result = scriptorium(
        "ingest", "s3://archive/scans/", "local.pdf", "--api-key", "sk_x_y", "--url", "http://x"
    )
    assert result.exit_code == 2
    assert "one s3://source/bucket/prefix at a time" in result.stderr


def test_unknown_choices_are_usage_errors() -> None:
    for arguments in (
        ["ingest", "a.pdf", "--priority", "urgent"],
        ["ocr", __file__, "--model", ".", "--mode", "huge"],
        ["tenant", "quota", "acme", "--pages", "-5"],
        ["worker", "--concurrency", "many"],
    ):
        result = scriptorium(*arguments)
        assert result.exit_code == 2, arguments
        assert "Invalid value" in result.stderr, result.stderr
