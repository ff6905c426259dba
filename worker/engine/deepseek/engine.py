"""The DeepSeek-OCR engine: one resident model (DeepSeek-OCR or Unlimited-OCR) reading batches of pages.

What differs between the two families (attention, context, prompts, guard defaults) comes from
the loaded checkpoint's profile; settings left unset take the profile's values.

For each page: reference preprocessing for its mode, the prompt ids of its task, greedy decoding
bounded by the context, then parsing into markdown, layout blocks and figure crops. Token counts
come from the ids actually fed and produced. Pages of one mode share generate calls; a call that
runs out of device memory is halved and retried, any other error in a call is narrowed down to
the page that caused it, and a fault that poisons the device stops the engine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog
import torch
from PIL import Image, ImageDraw

from scriptorium.modes import Mode
from scriptorium.settings import EngineSettings
from worker.engine.base import (
    BatchPageFailures,
    EngineFatal,
    PageFailed,
    PageInput,
    PageResult,
    PromptTask,
    TokenCounts,
)
from worker.engine.deepseek.batching import BatchCandidate, plan_batches
from worker.engine.deepseek.faults import is_fatal_device_error, is_out_of_memory
from worker.engine.deepseek.generation import (
    GeneratedSequence,
    GenerationRequest,
    RepetitionGuard,
    build_inputs,
    generate_batch,
)
from worker.engine.deepseek.loader import LoadedModel, load_model
from worker.engine.deepseek.postprocess import looks_repetitive, parse_output, strip_special_tokens
from worker.engine.deepseek.preprocess import PreparedImage, prepare_image
from worker.engine.deepseek.special_tokens import BOS, EOS, IMAGE
from worker.engine.profiles import ModelProfile

log = structlog.get_logger(__name__)

WARMUP_PAGE_SIZE = (1191, 1684)  # A4 at 144 dpi: exercises gundam tiles and the global view
WARMUP_NEW_TOKENS = 8


@dataclass(frozen=True)
class _PreparedPage:
    position: int
    page: PageInput
    image: PreparedImage
    prompt_ids: list[int]
    max_new_tokens: int
    seconds: float


@dataclass(frozen=True)
class _PreparedAhead:
    """What ``preprocess`` built for one page, and for which reading of it."""

    mode: Mode
    task: PromptTask
    query: str | None
    image: PreparedImage
    prompt_ids: list[int]
    max_new_tokens: int
    seconds: float

    def serves(self, page: PageInput) -> bool:
        return (self.mode, self.task, self.query) == (page.mode, page.task, page.query)


@dataclass(frozen=True)
class _Generated:
    item: _PreparedPage
    outcome: GeneratedSequence | PageFailed
    seconds: float


class DeepSeekOcrEngine:
    """Implements :class:`worker.engine.base.Engine` with a DeepSeek-OCR-family model through transformers."""

    def __init__(self, settings: EngineSettings, *, loaded: LoadedModel | None = None) -> None:
        self._settings = settings
        self._loaded = loaded if loaded is not None else load_model(settings)
        profile = self._loaded.profile
        if settings.family is not None and settings.family is not profile.family:
            raise ValueError(f"the loaded model is {profile.family}, the settings ask for {settings.family}")
        self._guard = repetition_guard(settings, profile)
        self._max_context = settings.max_context or self._loaded.max_context
        self._max_new_tokens = settings.max_new_tokens or profile.default_max_new_tokens
        self._check_prompt_assembly()

    @property
    def revision(self) -> str:
        return self._loaded.revision

    @property
    def model(self) -> str:
        return self._loaded.profile.family.value

    @property
    def guard(self) -> RepetitionGuard:
        return self._guard

    @property
    def max_context(self) -> int:
        return self._max_context

    @property
    def loaded(self) -> LoadedModel:
        return self._loaded

    def warmup(self) -> None:
        """Read one synthetic A4 page in gundam mode for a few tokens."""
        page = PageInput(
            page_no=0, image=synthetic_page(*WARMUP_PAGE_SIZE), mode=Mode.GUNDAM, task=PromptTask.MARKDOWN
        )
        outcome = self._run([page], new_token_cap=WARMUP_NEW_TOKENS)[0]
        if isinstance(outcome, PageFailed):
            raise EngineFatal(f"warm-up failed: {outcome.message}")

    def preprocess(self, page: PageInput) -> PageInput:
        try:
            item = self._prepare(0, page, None)
        except Exception:  # run() prepares it again and reports why it cannot be read
            return page
        ahead = _PreparedAhead(
            page.mode, page.task, page.query, item.image, item.prompt_ids, item.max_new_tokens, item.seconds
        )
        return replace(page, prepared=ahead)

    def run(self, pages: Sequence[PageInput]) -> list[PageResult]:
        outcomes = self.run_outcomes(pages)
        results = [outcome for outcome in outcomes if isinstance(outcome, PageResult)]
        if len(results) != len(outcomes):
            raise BatchPageFailures(outcomes)
        return results

    def run_outcomes(self, pages: Sequence[PageInput]) -> list[PageResult | PageFailed]:
        """Every page's result, or the :class:`PageFailed` that explains why it has none."""
        return self._run(pages, new_token_cap=None)

    def memory_stats(self) -> dict[str, int]:
        """Device memory in bytes (CUDA only; empty on CPU)."""
        device = self._loaded.device
        if device.type != "cuda":
            return {}
        return {
            "allocated_bytes": torch.cuda.memory_allocated(device),
            "reserved_bytes": torch.cuda.memory_reserved(device),
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
            "total_bytes": torch.cuda.get_device_properties(device).total_memory,
        }

    def _run(self, pages: Sequence[PageInput], *, new_token_cap: int | None) -> list[PageResult | PageFailed]:
        outcomes: list[PageResult | PageFailed | None] = [None] * len(pages)
        prepared: list[_PreparedPage] = []
        for position, page in enumerate(pages):
            try:
                prepared.append(self._prepare(position, page, new_token_cap))
            except Exception as error:
                outcomes[position] = PageFailed(page.page_no, f"cannot prepare the page: {error}")
        candidates = [
            BatchCandidate(
                group=self._batch_group(item),
                prompt_tokens=len(item.prompt_ids),
                new_tokens=self._loaded.profile.cached_new_tokens(item.max_new_tokens),
            )
            for item in prepared
        ]
        batches = plan_batches(
            candidates,
            token_budget=self._settings.batch_token_budget,
            max_pages=self._settings.max_batch_pages,
        )
        for batch in batches:
            for generated in self._generate([prepared[index] for index in batch]):
                outcomes[generated.item.position] = self._finish(generated)
        finished = [outcome for outcome in outcomes if outcome is not None]
        if len(finished) != len(pages):
            raise RuntimeError("the engine lost track of a page")  # every page is prepared or failed above
        return finished

    def _batch_group(self, item: _PreparedPage) -> tuple[Mode, int]:
        """Pages that may share a call: one mode; with a reference window also one prompt length.

        transformers 5.23 looks a reference-window layer's padding mask up at the window's offset,
        so once a call has generated more than the window a left-padded row starts to see its
        padding. Pages of one prompt length need no padding (``generate_batch`` refuses the rest).
        """
        if self._loaded.profile.reference_sliding_window:
            return item.page.mode, len(item.prompt_ids)
        return item.page.mode, 0

    def _prepare(self, position: int, page: PageInput, new_token_cap: int | None) -> _PreparedPage:
        ahead = page.prepared
        if isinstance(ahead, _PreparedAhead) and ahead.serves(page) and new_token_cap is None:
            return _PreparedPage(
                position, page, ahead.image, ahead.prompt_ids, ahead.max_new_tokens, ahead.seconds
            )
        started = time.perf_counter()
        image = prepare_image(
            page.image,
            page.mode,
            min_crops=self._settings.min_crops,
            max_crops=self._settings.max_crops,
        )
        prompt_ids = self._loaded.tokenizer.prompt_ids(page.task, image.geometry.placeholders, page.query)
        if prompt_ids.count(IMAGE.id) != image.geometry.placeholders:
            raise ValueError(
                f"the prompt does not carry the page's {image.geometry.placeholders} image placeholders"
            )
        room = self._max_context - len(prompt_ids)
        if room <= 0:
            raise ValueError(
                f"a prompt of {len(prompt_ids)} tokens leaves no room "
                f"in the {self._max_context}-token context"
            )
        caps = [room, self._max_new_tokens or room, new_token_cap or room]
        return _PreparedPage(
            position=position,
            page=page,
            image=image,
            prompt_ids=prompt_ids,
            max_new_tokens=min(caps),
            seconds=time.perf_counter() - started,
        )

    def _generate(self, batch: list[_PreparedPage]) -> list[_Generated]:
        requests = [GenerationRequest(item.prompt_ids, item.image, item.max_new_tokens) for item in batch]
        started = time.perf_counter()
        try:
            sequences = generate_batch(
                self._loaded.model,
                requests,
                guard=self._guard,
                device=self._loaded.device,
                dtype=self._loaded.dtype,
            )
        except Exception as error:
            return self._recover(batch, error)
        share = (time.perf_counter() - started) / len(batch)
        return [_Generated(item, sequence, share) for item, sequence in zip(batch, sequences, strict=True)]

    def _recover(self, batch: list[_PreparedPage], error: Exception) -> list[_Generated]:
        if is_fatal_device_error(error):
            raise EngineFatal(f"the device is unusable: {error}") from error
        pages = [item.page.page_no for item in batch]
        if is_out_of_memory(error):
            if self._loaded.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                return [_Generated(batch[0], PageFailed(pages[0], "out of device memory even alone"), 0.0)]
            half = len(batch) // 2
            log.warning("engine.batch_out_of_memory", pages=pages, retry_sizes=[half, len(batch) - half])
            return self._generate(batch[:half]) + self._generate(batch[half:])
        if len(batch) == 1:
            log.warning("engine.page_failed", page=pages[0], error=repr(error))
            return [_Generated(batch[0], PageFailed(pages[0], f"generation failed: {error}"), 0.0)]
        log.warning("engine.batch_failed", pages=pages, error=repr(error))
        return [generated for item in batch for generated in self._generate([item])]

    def _finish(self, generated: _Generated) -> PageResult | PageFailed:
        item, sequence = generated.item, generated.outcome
        if isinstance(sequence, PageFailed):
            return sequence
        started = time.perf_counter()
        page = item.page
        try:
            raw = self._loaded.tokenizer.decode([token for token in sequence.token_ids if token != EOS.id])
            parsed = parse_output(raw, page_no=page.page_no, image=page.image)
            repetition = sequence.guard_intervened or looks_repetitive(strip_special_tokens(raw))
        except Exception as error:
            return PageFailed(page.page_no, f"cannot parse the model output: {error}")
        geometry = item.image.geometry
        return PageResult(
            page_no=page.page_no,
            mode=page.mode,
            grid=geometry.grid,
            tokens=TokenCounts(
                vision=geometry.vision_features,
                placeholders=item.prompt_ids.count(IMAGE.id),
                valid=geometry.valid,
                prompt=len(item.prompt_ids),
                output=len(sequence.token_ids),
            ),
            finished=sequence.finished,
            repetition=repetition,
            markdown=parsed.markdown,
            raw_output=raw,
            blocks=parsed.blocks,
            figures=parsed.figures,
            engine_seconds=item.seconds + generated.seconds + (time.perf_counter() - started),
            model_revision=self.revision,
            model=self.model,
        )

    def _check_prompt_assembly(self) -> None:
        """Start-up check that what reaches the model begins with BOS and carries every placeholder."""
        image = prepare_image(synthetic_page(*WARMUP_PAGE_SIZE), Mode.GUNDAM)
        prompt_ids = self._loaded.tokenizer.prompt_ids(PromptTask.MARKDOWN, image.geometry.placeholders)
        inputs = build_inputs(
            [GenerationRequest(prompt_ids, image, 1)], device=torch.device("cpu"), dtype=torch.float32
        )
        first = int(inputs.input_ids[0, 0])
        placeholders = int((inputs.input_ids == IMAGE.id).sum())
        if first != BOS.id or placeholders != image.geometry.placeholders:
            raise EngineFatal(
                f"prompt assembly is broken: first id {first} (want {BOS.id}), "
                f"{placeholders} image placeholders (want {image.geometry.placeholders})"
            )


def repetition_guard(settings: EngineSettings, profile: ModelProfile) -> RepetitionGuard:
    """The no-repeat guard: each setting left unset takes the family's published value."""
    defaults = profile.repetition
    return RepetitionGuard(
        ngram_size=defaults.ngram_size if settings.ngram_size is None else settings.ngram_size,
        window_size=defaults.window if settings.ngram_window is None else settings.ngram_window,
        whitelist=tuple(defaults.whitelist if settings.ngram_whitelist is None else settings.ngram_whitelist),
    )


def synthetic_page(width: int, height: int) -> Image.Image:
    """A white page with a few lines of dark bars, standing in for text."""
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    line_height = max(8, height // 40)
    for line in range(math.ceil(height / line_height / 2)):
        top = line * 2 * line_height + line_height
        draw.rectangle(
            (width // 10, top, width - width // 10 - (line % 3) * width // 8, top + line_height // 2),
            fill="black",
        )
    return page
