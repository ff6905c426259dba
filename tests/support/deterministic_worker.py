"""``python -m tests.support.deterministic_worker``: the real worker entry point, test engine inside.

Everything but the engine is the product's code path (``worker.main.run_worker``); the product
itself offers no way to select this engine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scriptorium.settings import load_settings
from tests.support.deterministic_engine import build, served_family
from worker.main import run_worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queues", default="gpu")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--hostname")
    parser.add_argument("--ready-file")
    args = parser.parse_args()
    run_worker(
        load_settings(env_file=None),
        queues=args.queues.split(","),
        concurrency=args.concurrency,
        hostname=args.hostname,
        engine_factory=build,
        family_of=served_family,
        ready_file=Path(args.ready_file) if args.ready_file else None,
    )


if __name__ == "__main__":
    main()
