"""Fleet overhead per page, and rasterisation speed, measured side by side in one run.

Starts real services (a scratch Postgres database, a Redis database, SeaweedFS) and the fleet's
real processes with a zero-cost engine, prepares N pages, then lets one GPU worker drain them.
The same engine is then called in a plain loop over the same page images. The difference per
page is what the fleet costs: claims, leases, storage reads, result writes, accounting,
dispatch. Target: under 20 ms per page, so a GPU reading 3-10 pages/s is never starved.

    .venv/bin/python -m bench.fleet [--documents 25] [--batch 8]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from scriptorium.db.migrate import upgrade
from scriptorium.db.models import Page
from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.modes import Mode
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.conftest import service_env
from tests.support import builders
from tests.support.client import ApiClient
from tests.support.deterministic_engine import DeterministicEngine
from tests.support.fleet import running_fleet
from tests.support.services import postgres_database, redis_database, seaweedfs, wait_for
from worker.engine.base import PageInput
from worker.prepare.render import render_pages

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SAMPLE = CORPUS / "pdf-real" / "normal_4pages.pdf"
TARGET_MS = 20.0


def _settings(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("SCRIPTORIUM_")})
    try:
        return Settings(_env_file=None)  # type: ignore[call-arg]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def rasterise(settings: Settings) -> tuple[float, float]:
    """Pages per second and median ms per page rendering the pdf-real corpus at 144 dpi."""
    timings = []
    for pdf in sorted((CORPUS / "pdf-real").glob("*.pdf")):
        started = time.perf_counter()
        for _ in render_pages(pdf, settings.prepare):
            now = time.perf_counter()
            timings.append(now - started)
            started = now
    return len(timings) / sum(timings), statistics.median(timings) * 1000


def plain_loop(settings: Settings, store: ObjectStore, keys: list[str], batch: int) -> float:
    """Seconds for the engine alone over the same pages, images read from storage."""
    engine = DeterministicEngine(settings)
    started = time.perf_counter()
    for start in range(0, len(keys), batch):
        inputs = []
        for offset, key in enumerate(keys[start : start + batch]):
            with Image.open(io.BytesIO(store.get_bytes(key))) as image:
                inputs.append(
                    PageInput(page_no=start + offset + 1, image=image.convert("RGB"), mode=Mode.TINY)
                )
        engine.run(inputs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=25, help="copies of a 4-page PDF")
    parser.add_argument("--batch", type=int, default=8, help="pages per engine call (engine.max_batch_pages)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="scriptorium-bench-"))
    with postgres_database() as db_url, redis_database() as redis_url, seaweedfs(workdir / "s3") as s3:
        upgrade(db_url)
        env = {
            **os.environ,
            **service_env(db_url, redis_url, s3, "scriptorium-bench"),
            "SCRIPTORIUM_LOG__LEVEL": "WARNING",
            "SCRIPTORIUM_LIMITS__DISPATCH_DEPTH": "64",
            "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": str(args.batch),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        settings = _settings(env)
        store = ObjectStore(settings.storage)
        store.ensure_bucket()
        database = make_engine(settings.db)
        sessions = make_session_factory(database)
        with running_fleet(env, workdir) as fleet:
            fleet.start_api()
            fleet.start_cpu_worker()
            fleet.start_beat()
            with sessions.begin() as session:
                key = builders.tenant(session).key
            client = ApiClient(fleet, key)
            documents = [
                client.upload(SAMPLE, mode="tiny", dedup="false")["id"] for _ in range(args.documents)
            ]
            total = 4 * len(documents)

            def prepared() -> bool:
                with sessions() as session:
                    count = session.execute(select(func.count()).select_from(Page)).scalar_one()
                return int(count) == total

            wait_for(prepared, timeout=600, interval=0.5, what="pages to be prepared")
            ready = workdir / "worker-gpu.ready"
            fleet.start_gpu_worker(wait_ready=False)
            wait_for(ready.exists, timeout=120, interval=0.01, what="the GPU worker")
            started = time.perf_counter()
            for document_id in documents:
                client.wait_terminal(document_id, timeout=600)
            fleet_seconds = time.perf_counter() - started
            with sessions() as session:
                keys = list(
                    session.execute(select(Page.image_key).order_by(Page.document_id, Page.page_no)).scalars()
                )
        loop_seconds = plain_loop(settings, store, keys, args.batch)
        raster_rate, raster_median = rasterise(settings)
        database.dispose()

    fleet_rate = total / fleet_seconds
    overhead_ms = (fleet_seconds - loop_seconds) / total * 1000
    print(f"pages: {total} ({args.documents} documents), engine batch {args.batch}, zero-cost engine")
    print(f"{'':32}{'pages/s':>10}{'ms/page':>10}")
    print(f"{'fleet (API → Celery → Postgres)':32}{fleet_rate:>10.1f}{1000 / fleet_rate:>10.2f}")
    print(f"{'same engine, plain loop':32}{total / loop_seconds:>10.1f}{loop_seconds / total * 1000:>10.2f}")
    print(f"{'rasterise pdf-real @144 dpi':32}{raster_rate:>10.1f}{raster_median:>10.2f}  (median)")
    verdict = "meets" if overhead_ms < TARGET_MS else "misses"
    print(f"fleet overhead: {overhead_ms:.2f} ms/page — {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
