"""A deterministic stand-in for the DeepSeek-OCR engine, for pipeline and fault tests.

It honours the engine contract exactly (token geometry from the real formulas, one result per
page, PageFailed / EngineFatal) and produces text derived from the page itself. Faults are
switched on through environment variables so tests can steer a real worker process:

- ``FAKE_ENGINE_DELAY_S``: seconds per page (default 0)
- ``FAKE_ENGINE_BATCH_DELAY_S``: an engine call takes this long in all, whatever its size (a GPU
  batch stand-in; the engine's own work on the pages counts towards it)
- ``FAKE_ENGINE_PREPROCESS_S``: seconds of CPU-side preparation per page (resizing, tensors), done
  by ``preprocess`` ahead of the call when the pipeline asks, else inside ``run``
- ``FAKE_ENGINE_CRASH_PAGES``: page numbers on which the process dies (SIGKILL-like ``os._exit``)
- ``FAKE_ENGINE_CRASH_ONCE_FILE``: with CRASH_PAGES, crash only while this file does not exist
  (it is created just before dying), so the retry succeeds
- ``FAKE_ENGINE_FAIL_PAGES``: page numbers that raise PageFailed
- ``FAKE_ENGINE_UNDER_READ_BELOW``: a mode; runs in cheaper modes end without EOS
- ``FAKE_ENGINE_EVENTS``: a file that gets one JSON line per page run (pid, page, mode, whether
  it arrived prepared)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from scriptorium.model_families import DEFAULT_MODEL_FAMILY, ModelFamily
from scriptorium.modes import Mode, token_geometry
from scriptorium.settings import EngineSettings, Settings
from worker.engine.base import Block, Engine, PageFailed, PageInput, PageResult, PromptTask, TokenCounts

PROMPT_TEXT_TOKENS = 12  # BOS + the task prompt around the placeholders


def _pages(variable: str) -> set[int]:
    return {int(p) for p in os.environ.get(variable, "").split(",") if p.strip()}


@dataclass(frozen=True)
class _Prepared:
    mode: Mode
    task: PromptTask
    digest: str


class DeterministicEngine:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings.engine
        self.delay_s = float(os.environ.get("FAKE_ENGINE_DELAY_S", "0"))
        self.batch_delay_s = float(os.environ.get("FAKE_ENGINE_BATCH_DELAY_S", "0"))
        self.preprocess_s = float(os.environ.get("FAKE_ENGINE_PREPROCESS_S", "0"))
        self.crash_pages = _pages("FAKE_ENGINE_CRASH_PAGES")
        self.crash_once_file = os.environ.get("FAKE_ENGINE_CRASH_ONCE_FILE")
        self.fail_pages = _pages("FAKE_ENGINE_FAIL_PAGES")
        under = os.environ.get("FAKE_ENGINE_UNDER_READ_BELOW")
        self.under_read_below = Mode(under) if under else None
        events = os.environ.get("FAKE_ENGINE_EVENTS")
        self.events = Path(events) if events else None
        self.warmed_up = False

    @property
    def revision(self) -> str:
        return "deterministic-test-engine"

    @property
    def model(self) -> str:
        return served_family(self._settings).value

    def warmup(self) -> None:
        self.run([PageInput(page_no=0, image=Image.new("RGB", (64, 64), "white"), mode=Mode.TINY)])
        self.warmed_up = True

    def preprocess(self, page: PageInput) -> PageInput:
        return replace(page, prepared=self._prepare(page))

    def _prepare(self, page: PageInput) -> _Prepared:
        """The CPU half of a read (a real engine resizes and tiles here): the page's fingerprint."""
        if self.preprocess_s:
            time.sleep(self.preprocess_s)
        digest = hashlib.sha256(page.image.resize((16, 16)).tobytes()).hexdigest()[:12]
        return _Prepared(page.mode, page.task, digest)

    def run(self, pages: Sequence[PageInput]) -> list[PageResult]:
        started = time.perf_counter()
        results = [self._read(page) for page in pages]
        if self.batch_delay_s and self.warmed_up:  # the call takes this long in all, like a GPU batch
            time.sleep(max(0.0, self.batch_delay_s - (time.perf_counter() - started)))
        return results

    def _read(self, page: PageInput) -> PageResult:
        if page.page_no in self.crash_pages and not (
            self.crash_once_file and Path(self.crash_once_file).exists()
        ):
            if self.crash_once_file:
                Path(self.crash_once_file).touch()
            os._exit(137)
        if page.page_no in self.fail_pages:
            raise PageFailed(page.page_no, "the test engine was told to fail this page")
        started = time.perf_counter()
        ahead = page.prepared
        prepared_ahead = isinstance(ahead, _Prepared) and (ahead.mode, ahead.task) == (page.mode, page.task)
        prepared = ahead if isinstance(ahead, _Prepared) and prepared_ahead else self._prepare(page)
        digest = prepared.digest
        if self.delay_s:
            time.sleep(self.delay_s)
        width, height = page.image.size
        geometry = token_geometry(
            page.mode, width, height, min_crops=self._settings.min_crops, max_crops=self._settings.max_crops
        )
        markdown = f"# Page {page.page_no}\n\nRead at {page.mode.value}; fingerprint {digest}."
        under_read = self.under_read_below is not None and page.mode.rank < self.under_read_below.rank
        output_tokens = len(markdown.split()) + (0 if under_read else 1)
        if self.events is not None and page.page_no:
            with self.events.open("a") as log:
                log.write(
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "page_no": page.page_no,
                            "mode": page.mode.value,
                            "prepared_ahead": prepared_ahead,
                            "at": time.time(),
                        }
                    )
                    + "\n"
                )
        return PageResult(
            page_no=page.page_no,
            mode=page.mode,
            grid=geometry.grid,
            tokens=TokenCounts(
                vision=geometry.vision_features,
                placeholders=geometry.placeholders,
                valid=geometry.valid,
                prompt=geometry.placeholders + PROMPT_TEXT_TOKENS,
                output=output_tokens,
            ),
            finished=not under_read,
            repetition=False,
            markdown=markdown,
            raw_output=markdown,
            blocks=(Block(label="title", boxes=((0, 0, width, height // 10),), text=f"Page {page.page_no}"),),
            engine_seconds=time.perf_counter() - started,
            model_revision=self.revision,
        )


def build(settings: Settings) -> Engine:
    return DeterministicEngine(settings)


def served_family(settings: Settings | EngineSettings) -> ModelFamily:
    """The family the test engine serves: ``engine.family``, else the fleet's default."""
    engine = settings.engine if isinstance(settings, Settings) else settings
    return engine.family or DEFAULT_MODEL_FAMILY
