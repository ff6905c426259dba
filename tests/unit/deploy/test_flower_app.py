"""Flower's Celery app is the fleet's own: same broker, same visibility timeout as the workers."""

from __future__ import annotations

import importlib.util

import pytest

from scriptorium.queueing import create_celery
from scriptorium.settings import load_settings
from tests.unit.deploy.deployment import ROOT

FLOWER_APP = ROOT / "infra" / "monitoring" / "flower" / "flower_app.py"


def test_flower_uses_the_transport_options_of_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTORIUM_REDIS__URL", "redis://redis.invalid:6379/3")
    monkeypatch.setenv("SCRIPTORIUM_REDIS__VISIBILITY_TIMEOUT_S", "14400")
    spec = importlib.util.spec_from_file_location("flower_app", FLOWER_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    workers = create_celery(load_settings(env_file=None))
    assert module.app.conf.broker_url == "redis://redis.invalid:6379/3"
    assert module.app.conf.broker_transport_options == workers.conf.broker_transport_options
    assert module.app.conf.broker_transport_options["visibility_timeout"] == 14400
