"""Prometheus scrapes what the fleet exports; the Grafana dashboard shows metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from scriptorium.metrics import REGISTRY, Backlog, backlog_families
from scriptorium.settings import Settings
from tests.unit.deploy.deployment import ROOT, services

MONITORING = ROOT / "infra" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "scriptorium.json"
PROVISIONING = MONITORING / "grafana" / "provisioning"
PROMQL_FUNCTIONS_AND_KEYWORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "by",
    "without",
    "rate",
    "increase",
    "histogram_quantile",
    "le",
    "on",
}
LABELS = {"mode", "queue", "outcome", "reason", "instance", "kind", "job", "from_mode", "to_mode", "model"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _prometheus() -> dict[str, Any]:
    config = _yaml(MONITORING / "prometheus.yml")
    assert isinstance(config, dict)
    return config


def _jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in _prometheus()["scrape_configs"]}


def exported_series() -> set[str]:
    """Series names the fleet exports: worker metrics (with their suffixes) and the backlog."""
    names = set()
    for metric in REGISTRY.collect():
        names |= {sample.name for sample in metric.samples} | {metric.name}
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
        if metric.type == "histogram":
            names |= {f"{metric.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    for family in backlog_families(Backlog(queued_pages_by_mode={"base": 1})):
        names.add(family.name)
    return names | {"scriptorium_backlog_up", "up"}


def test_prometheus_scrapes_the_api_and_every_worker() -> None:
    defined = services()
    jobs = _jobs()
    api_port = defined["api"]["environment"]["SCRIPTORIUM_API__PORT"]
    assert jobs["api"]["static_configs"][0]["targets"] == [f"api:{api_port}"]
    assert jobs["api"]["metrics_path"] == "/metrics"
    worker_port = Settings(_env_file=None).metrics.worker_port
    gpu = jobs["worker-gpu"]["dns_sd_configs"][0]
    assert gpu["names"] == ["gpu-workers"] and gpu["port"] == worker_port
    assert "gpu-workers" in defined["worker-gpu"]["networks"]["default"]["aliases"]
    cpu = jobs["worker-cpu"]["dns_sd_configs"][0]
    assert cpu["names"] == ["worker-cpu"] and cpu["port"] == worker_port
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    assert "--port=5555" in defined["flower"]["command"]


def test_prometheus_and_grafana_get_their_configuration_mounted() -> None:
    defined = services()
    config = "./infra/monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert config in defined["prometheus"]["volumes"]
    grafana = defined["grafana"]["volumes"]
    assert "./infra/monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    provider = _yaml(PROVISIONING / "dashboards" / "scriptorium.yml")
    folder = provider["providers"][0]["options"]["path"]
    assert f"./infra/monitoring/grafana/dashboards:{folder}:ro" in grafana
    home = defined["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/{DASHBOARD.name}"


def _dashboard() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(dashboard, dict)
    return dashboard


def _expressions() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def test_the_dashboard_uses_the_provisioned_datasource() -> None:
    datasource = _yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    panels = _dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_the_dashboard_only_queries_metrics_the_fleet_exports() -> None:
    exported = exported_series()
    for expression in _expressions():
        without_labels = re.sub(r"\{[^}]*\}", "", expression)
        without_strings = re.sub(r'"[^"]*"', "", without_labels)
        without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
        for name in re.findall(r"[a-z_][a-z0-9_]*", without_ranges):
            if name in PROMQL_FUNCTIONS_AND_KEYWORDS or name in LABELS:
                continue
            assert name in exported, f"the dashboard queries {name}, which nothing exports: {expression}"


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    joined = "\n".join(_expressions())
    for series in (
        "scriptorium_pages_total",  # pages by mode and outcome
        "scriptorium_vision_tokens_total",
        "scriptorium_output_tokens_total",
        "scriptorium_escalations_total",
        "scriptorium_page_seconds_bucket",  # page latency
        "scriptorium_engine_seconds_bucket",
        "scriptorium_queue_depth",
        "scriptorium_queue_oldest_age_seconds",
        "scriptorium_gpu_memory_bytes",
        "scriptorium_model_load_seconds",
    ):
        assert series in joined, series
