"""A whole worker host drops off the network mid-batch: its pages finish elsewhere, recorded once.

When the partition heals, the host's late results are refused by the lease fence.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page
from scriptorium.storage import ObjectStore
from tests.faults.network import IsolatedHost, TcpForwarder, isolated_host
from tests.support.client import ApiClient, ids
from tests.support.fleet import running_fleet, wait_until
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def lost_host() -> Iterator[IsolatedHost]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the host-loss scenario needs root and iproute2 (network namespaces)")
    with isolated_host() as host:
        yield host


def _through(url: str, host: str, forwarders: list[TcpForwarder]) -> str:
    """``url`` with its loopback address replaced by a forwarder on ``host``."""
    parts = urlsplit(url)
    forwarder = TcpForwarder(host, parts.port or 0).start()
    forwarders.append(forwarder)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"{host}:{forwarder.port}")
    return urlunsplit(parts._replace(netloc=netloc))


def test_a_worker_host_cut_off_mid_batch_loses_no_page_and_reads_none_twice(
    fault_env: dict[str, str],
    store: ObjectStore,
    sessions: sessionmaker[Session],
    corpus: Path,
    tmp_path: Path,
    lost_host: IsolatedHost,
) -> None:
    forwarders: list[TcpForwarder] = []
    try:
        remote_env = {
            "SCRIPTORIUM_DB__URL": _through(fault_env["SCRIPTORIUM_DB__URL"], lost_host.host_ip, forwarders),
            "SCRIPTORIUM_REDIS__URL": _through(
                fault_env["SCRIPTORIUM_REDIS__URL"], lost_host.host_ip, forwarders
            ),
            "SCRIPTORIUM_STORAGE__ENDPOINT": urlsplit(
                _through(
                    f"http://{fault_env['SCRIPTORIUM_STORAGE__ENDPOINT']}", lost_host.host_ip, forwarders
                )
            ).netloc,
            "SCRIPTORIUM_METRICS__WORKER_PORT": "0",
            "FAKE_ENGINE_DELAY_S": "3",
            # Here the host is to come back with its batch, not to be restarted by its watchdog.
            "SCRIPTORIUM_REDIS__LIVENESS_TIMEOUT_S": "300",
        }
        with running_fleet(fault_env, tmp_path) as fleet:
            fleet.start_api()
            fleet.start_cpu_worker()
            fleet.start_beat()
            remote = fleet.start_gpu_worker("worker-gpu-remote", engine_env=remote_env, wrap=lost_host.wrap())
            assert remote.alive()
            client = ApiClient.for_new_tenant(fleet, sessions)
            document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base", dedup="false")
            wait_until(
                lambda: client.document(document["id"])["pages"].get("running", 0) == 4,
                timeout=90,
                what="the remote host to take the whole document as one batch",
                fleet=fleet,
            )
            lost_host.cut()  # the host vanishes: no reset, no goodbye
            fleet.start_gpu_worker("worker-gpu-local")
            assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
            with sessions() as session:
                pages = list(
                    session.execute(
                        select(Page)
                        .where(Page.document_id == uuid.UUID(document["id"]))
                        .order_by(Page.page_no)
                    ).scalars()
                )
            assert [p.state for p in pages] == ["done"] * 4
            assert all(p.attempts == 2 and len(p.ocr_attempts) == 1 for p in pages), (
                "recorded once, by the local host"
            )
            lost_host.restore()  # the partition heals: what the host still holds is fenced off
            refused = '"page_no": {}, "why": "another worker owns the page now"'
            wait_until(
                lambda: all(refused.format(n) in remote.log() for n in range(1, 5)),
                timeout=60,
                what="the returning host's late results to be refused",
                fleet=fleet,
            )
            with sessions() as session:
                after = session.execute(
                    select(Page.attempts, Page.markdown)
                    .where(Page.document_id == uuid.UUID(document["id"]))
                    .order_by(Page.page_no)
                ).all()
            assert after == [(p.attempts, p.markdown) for p in pages], (
                "nothing changed after the host came back"
            )
            assert_invariants(sessions, ids(document))
    finally:
        for forwarder in forwarders:
            forwarder.stop()
