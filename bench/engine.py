"""Engine throughput: batched versus one page at a time, and fixed-length generation per mode.

python bench/engine.py compare [--pages 8] [--new-tokens 48] [--modes tiny,base]
    Tiny random checkpoint on CPU, read through the engine (preprocessing, generation,
    parsing): pages/s and peak resident memory per mode, batch of --pages versus one by one.

python bench/engine.py throughput --size full --device cuda [--pages 8] [--new-tokens 1000]
    Random weights at the real size (or --size tiny), written in the published layout and
    loaded by the engine's loader; every mode generates exactly --new-tokens per page (EOS
    suppressed). Prints load time, pages/s, tokens/s and peak device memory per mode.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image

from scriptorium.modes import MODE_ORDER, Mode
from scriptorium.settings import EngineSettings
from worker.engine.base import PageInput, PromptTask
from worker.engine.deepseek.architecture import DeepSeekOcrArchitecture
from worker.engine.deepseek.engine import DeepSeekOcrEngine, synthetic_page
from worker.engine.deepseek.generation import GenerationRequest, RepetitionGuard, generate_batch
from worker.engine.deepseek.loader import LoadedModel, load_model
from worker.engine.deepseek.preprocess import prepare_image
from worker.engine.deepseek.tiny_checkpoint import (
    TINY_ARCHITECTURE,
    random_weights,
    write_checkpoint,
    write_tiny_checkpoint,
)

PAGE_SIZE = (1191, 1684)  # A4 at 144 dpi; gundam reads it as 2 x 3 tiles
NO_GUARD = RepetitionGuard(ngram_size=0, window_size=1, whitelist=())
T = TypeVar("T")


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_bytes: int


class PeakResidentMemory:
    """Samples this process's resident set size while a block runs (Linux /proc)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @contextmanager
    def watch(self) -> Iterator[PeakResidentMemory]:
        self.peak = self.current()
        self._stop.clear()
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            self._stop.set()
            sampler.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval_s)


def measure(run: Callable[[], T], device: torch.device) -> tuple[T, Measurement]:
    """What ``run`` returns, with its wall time and peak memory (device memory on CUDA, RSS on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        value = run()
        torch.cuda.synchronize(device)
        return value, Measurement(time.perf_counter() - started, torch.cuda.max_memory_allocated(device))
    with PeakResidentMemory().watch() as memory:
        started = time.perf_counter()
        value = run()
        seconds = time.perf_counter() - started
    return value, Measurement(seconds, memory.peak)


def best_of(repeat: int, run: Callable[[], T], device: torch.device) -> tuple[T, Measurement]:
    """The fastest of ``repeat`` runs (the others lost time to whatever else the machine was doing)."""
    runs = [measure(run, device) for _ in range(repeat)]
    return min(runs, key=lambda measured: measured[1].seconds)


def compare(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-tiny-") as scratch:
        checkpoint = write_tiny_checkpoint(Path(scratch), seed=0)
        settings = EngineSettings(
            model_path=str(checkpoint),
            device="cpu",
            max_new_tokens=args.new_tokens,
            batch_token_budget=10**9,
        )
        loaded = load_model(settings)
        batched = DeepSeekOcrEngine(
            settings.model_copy(update={"max_batch_pages": args.pages}), loaded=loaded
        )
        single = DeepSeekOcrEngine(settings.model_copy(update={"max_batch_pages": 1}), loaded=loaded)
        batched.warmup()
        print(
            f"tiny checkpoint, CPU, {args.threads} threads, {args.pages} A4 pages per mode, "
            f"<= {args.new_tokens} new tokens per page, best of {args.repeat}, torch {torch.__version__}"
        )
        print(
            f"{'mode':<8}{'one by one p/s':>16}{'batched p/s':>14}{'speed-up':>10}"
            f"{'peak RSS one':>14}{'peak RSS batch':>16}{'out tok/page':>14}"
        )
        for mode in args.modes:
            pages = [
                PageInput(page_no=n, image=synthetic_page(*PAGE_SIZE), mode=mode)
                for n in range(1, args.pages + 1)
            ]
            alone = best_of(args.repeat, partial(single.run, pages), loaded.device)[1]
            results, together = best_of(args.repeat, partial(batched.run, pages), loaded.device)
            outputs = [result.tokens.output for result in results]
            print(
                f"{mode.value:<8}{args.pages / alone.seconds:>16.2f}{args.pages / together.seconds:>14.2f}"
                f"{alone.seconds / together.seconds:>9.2f}x{alone.peak_bytes / 2**20:>12.0f}Mi"
                f"{together.peak_bytes / 2**20:>14.0f}Mi{sum(outputs) / len(outputs):>14.1f}"
            )


def throughput(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}.get(
        args.dtype, torch.bfloat16 if device.type == "cuda" else torch.float32
    )
    architecture = DeepSeekOcrArchitecture() if args.size == "full" else TINY_ARCHITECTURE
    with tempfile.TemporaryDirectory(prefix="bench-random-", dir=args.scratch) as scratch:
        started = time.perf_counter()
        write_random_checkpoint(Path(scratch), architecture, dtype)
        print(f"wrote a {args.size} random checkpoint in {time.perf_counter() - started:.1f} s", flush=True)
        settings = EngineSettings(
            model_path=scratch, device=args.device, dtype=str(dtype).removeprefix("torch.")
        )
        loaded = load_model(settings)
    print(
        f"model load: {loaded.load_seconds:.1f} s  device={loaded.device} dtype={loaded.dtype} "
        f"attention={loaded.attention} revision={loaded.revision}",
        flush=True,
    )
    if device.type == "cuda":
        print(
            f"weights resident: {torch.cuda.memory_allocated(device) / 2**30:.2f} GiB on "
            f"{torch.cuda.get_device_name(device)}",
            flush=True,
        )
    run_mode(loaded, Mode.BASE, pages=1, new_tokens=4)  # warm-up
    print(
        f"{'mode':<8}{'pages':>6}{'prompt tok':>11}{'new tok':>8}{'seconds':>9}{'pages/s':>9}"
        f"{'tokens/s':>10}{'peak mem':>11}"
    )
    for mode in args.modes:
        prompt_tokens, result = measure(
            partial(run_mode, loaded, mode, pages=args.pages, new_tokens=args.new_tokens), loaded.device
        )
        generated = args.pages * args.new_tokens
        print(
            f"{mode.value:<8}{args.pages:>6}{max(prompt_tokens):>11}{args.new_tokens:>8}{result.seconds:>9.1f}"
            f"{args.pages / result.seconds:>9.2f}{generated / result.seconds:>10.0f}"
            f"{result.peak_bytes / 2**30:>9.2f}Gi",
            flush=True,
        )


def run_mode(loaded: LoadedModel, mode: Mode, *, pages: int, new_tokens: int) -> list[int]:
    """Preprocess ``pages`` synthetic pages and generate exactly ``new_tokens`` for each, in one call."""
    return run_pages(loaded, mode, [synthetic_page(*PAGE_SIZE) for _ in range(pages)], new_tokens)


def run_pages(loaded: LoadedModel, mode: Mode, images: Sequence[Image.Image], new_tokens: int) -> list[int]:
    """Read ``images`` in one generate call, exactly ``new_tokens`` each; returns the prompt lengths."""
    requests = []
    for page in images:
        image = prepare_image(page, mode)
        prompt = loaded.tokenizer.prompt_ids(PromptTask.MARKDOWN, image.geometry.placeholders)
        requests.append(GenerationRequest(prompt, image, new_tokens))
    sequences = generate_batch(
        loaded.model, requests, guard=NO_GUARD, device=loaded.device, dtype=loaded.dtype, ignore_eos=True
    )
    assert all(len(sequence.token_ids) == new_tokens for sequence in sequences)
    return [len(request.prompt_ids) for request in requests]


def write_random_checkpoint(
    directory: Path, architecture: DeepSeekOcrArchitecture, dtype: torch.dtype
) -> Path:
    """``architecture`` with seeded random weights in ``dtype``, written in the published layout."""
    weights = {name: tensor.to(dtype) for name, tensor in random_weights(architecture, seed=0).items()}
    return write_checkpoint(directory, architecture, weights)


def parse_modes(text: str) -> list[Mode]:
    return [Mode(name) for name in text.split(",")] if text != "all" else list(MODE_ORDER)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cpu = commands.add_parser("compare", help="tiny checkpoint on CPU, batched versus one by one")
    cpu.add_argument("--pages", type=int, default=8)
    cpu.add_argument("--new-tokens", type=int, default=128)
    cpu.add_argument("--threads", type=int, default=2)
    cpu.add_argument("--repeat", type=int, default=3, help="report the fastest of this many runs")
    cpu.add_argument("--modes", type=parse_modes, default=list(MODE_ORDER))
    cpu.set_defaults(run=compare)
    fixed = commands.add_parser("throughput", help="fixed-length generation with random weights")
    fixed.add_argument("--size", choices=["full", "tiny"], default="full")
    fixed.add_argument("--device", default="cuda")
    fixed.add_argument("--pages", type=int, default=8)
    fixed.add_argument("--new-tokens", type=int, default=1000)
    fixed.add_argument("--modes", type=parse_modes, default=list(MODE_ORDER))
    fixed.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], default="auto")
    fixed.add_argument("--scratch", default=None, help="directory for the temporary checkpoint")
    fixed.set_defaults(run=throughput)
    args = parser.parse_args(argv)
    args.run(args)
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
