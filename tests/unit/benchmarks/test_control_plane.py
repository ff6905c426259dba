"""The control-plane bench's arithmetic: log pairing, the steady window, the saturation rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.control_plane import Rung, claim_to_record_ms, saturation, steady_rate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _line(event: str, seconds: float, **fields: object) -> str:
    stamp = (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return json.dumps({"event": event, "timestamp": stamp, **fields})


def _rung(workers: int, rate: float) -> Rung:
    return Rung(
        workers=workers,
        pages=100,
        pages_per_s=rate,
        p50_ms=1.0,
        p95_ms=2.0,
        postgres_cpu_s=0.0,
        postgres_backends=10,
        workers_cpu_s=0.0,
        s3_cpu_s=0.0,
        cpu_worker_cpu_s=0.0,
        machine_busy=0.5,
    )


def test_claims_pair_with_recordings_in_order_from_the_rung_offset(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    earlier = _line("batch.claimed", 0.0, batch=1) + "\n" + _line("page.recorded", 0.1, page_no=1) + "\n"
    rung = [
        "celery banner, not JSON",
        _line("batch.claimed", 10.0, batch=2),
        _line("batch.prefetched", 10.5, batch=1),
        _line("page.recorded", 11.0, page_no=1),
        _line("page.lease_lost", 11.0, pages=[1, 2, 3]),  # the heartbeat's, not a recording
        _line("page.lease_lost", 11.0, page_no=2),
        _line("page.recorded", 12.5, page_no=3),
    ]
    log.write_text(earlier + "\n".join(rung) + "\n")
    assert claim_to_record_ms({log: len(earlier.encode())}) == pytest.approx([1000.0, 1000.0, 2000.0])


def test_a_released_batch_is_refused_rather_than_mispaired(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text(_line("batch.claimed", 0.0, batch=2) + "\n" + _line("page.released", 1.0, batch=2) + "\n")
    with pytest.raises(RuntimeError, match="released"):
        claim_to_record_ms({log: 0})


def test_steady_rate_leaves_out_the_first_and_last_tenth() -> None:
    # 100 pages: ten slow ones at the start, then one every 0.1 s, then a long tail
    finished = [T0 + timedelta(seconds=i) for i in range(10)]
    finished += [T0 + timedelta(seconds=10 + 0.1 * i) for i in range(80)]
    finished += [T0 + timedelta(seconds=100 + i) for i in range(10)]
    assert steady_rate(finished) == pytest.approx(10.0)


def test_saturation_is_the_first_rung_no_later_rung_beats_by_the_gain() -> None:
    rungs = [_rung(1, 20), _rung(2, 38), _rung(4, 40), _rung(8, 41)]
    peak, saturated = saturation(rungs, 0.10)
    assert saturated and peak.workers == 2 and peak.pages_per_s == 38


def test_one_noisy_rung_is_not_taken_for_saturation() -> None:
    peak, saturated = saturation([_rung(1, 70), _rung(2, 94), _rung(4, 96), _rung(8, 132)], 0.10)
    assert not saturated and peak.workers == 8


def test_saturation_after_a_drop_keeps_the_peak() -> None:
    peak, saturated = saturation([_rung(1, 20), _rung(2, 30), _rung(4, 25), _rung(8, 31)], 0.10)
    assert saturated and peak.workers == 2


def test_a_ladder_that_keeps_rising_is_not_called_saturated() -> None:
    peak, saturated = saturation([_rung(1, 20), _rung(2, 30), _rung(4, 45)], 0.10)
    assert not saturated and peak.workers == 4
