"""After a database outage the sweeper lets workers extend their leases before taking pages away."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page
from scriptorium.lifecycle.claims import claim_page, extend_leases
from scriptorium.lifecycle.sweeping import sweep
from tests.support import builders
from tests.support.units import cancel, unit_of_work


def test_an_expired_lease_survives_a_sweep_with_grace_and_its_holder_extends_it(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        owner = builders.tenant(session).tenant
        document_id = builders.document_with_pages(session, owner, pages=2).id
    with sessions.begin() as session:
        held = claim_page(session, document_id, 1, owner="w", lease_s=1)
        abandoned = claim_page(session, document_id, 2, owner="w", lease_s=1)
        assert held is not None and abandoned is not None
    time.sleep(1.3)  # both leases ran out while, say, the database was away
    with unit_of_work(sessions) as uow:
        report = sweep(uow, lost_after_s=300, prepare_attempts=3, lease_grace_s=30)
    assert report.requeued == 0 and report.dead == 0
    with sessions.begin() as session:
        assert extend_leases(session, [held], lease_s=60) == set()  # the live worker is back
    with unit_of_work(sessions) as uow:
        report = sweep(uow, lost_after_s=300, prepare_attempts=3)  # grace over
    assert report.requeued == 1
    with sessions() as session:
        kept = session.get(Page, (document_id, 1))
        lost = session.get(Page, (document_id, 2))
        assert kept is not None and kept.state == "running" and kept.attempts == 1
        assert lost is not None and lost.state == "queued"
    cancel(sessions, document_id)  # leave nothing queued for other tests' dispatch
