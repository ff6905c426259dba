"""Our engine beside DeepSeek-OCR's own transformers code, on the same random full-size weights and pages.

    python -m bench.gpu_compare --official DIR [--official-site DIR] [--pages 3] [--new-tokens 256]
        [--modes base,gundam] [--size full] [--limit-s 440]

1. Writes the network with random bf16 weights in the published layout (``--size full``: the
   released 3.34 B-parameter architecture; ``tiny`` for a dry run) and ``--pages`` synthetic A4
   pages as PNG files, all in a scratch directory.
2. Our engine (this environment): loads the checkpoint with the engine's loader and, per mode,
   reads the pages in one batch and then one at a time, each page generating exactly
   ``--new-tokens`` tokens (EOS suppressed, no repetition guard).
3. The official code (a separate process, :mod:`bench.official_deepseek`, with ``--official-site``
   first on its import path for the transformers release the published code needs): the code
   files from ``--official`` are copied next to the same weights and its ``infer()`` reads the
   same pages one at a time, as its script does, with the same fixed output length.
4. Prints pages/s and tokens/s side by side. Everything stops by ``--limit-s`` (what has been
   measured by then is printed), so one call on a GPU host finishes within 8 minutes.

Nothing of the official code is imported into this process or kept in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.official_deepseek import (
    OFFICIAL_MODES,
    OfficialCodeMissing,
    locate_official_code,
    stage_official_code,
)

DEFAULT_MODES = ("base", "gundam")
OURS_SHARE = 0.35  # of the time left after writing the checkpoint; the official path gets the rest
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Timings:
    """Seconds and pages read for one mode on one path."""

    pages: int = 0
    seconds: float = 0.0
    prompt_tokens: list[int] = field(default_factory=list)

    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--official", type=Path, required=True, help="checkout of the published model repository"
    )
    parser.add_argument(
        "--official-site",
        type=Path,
        help="packages for the official code (transformers 4.46.3, tokenizers 0.20.3 …)",
    )
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--modes", type=_modes, default=list(DEFAULT_MODES))
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--attention", default="eager", choices=["eager", "flash_attention_2"])
    parser.add_argument("--scratch", type=Path, default=None, help="directory for the temporary checkpoint")
    parser.add_argument("--limit-s", type=float, default=440.0, help="stop measuring after this many seconds")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.new_tokens < 1:
        parser.error("--pages and --new-tokens must be at least 1")
    try:
        locate_official_code(args.official)
    except OfficialCodeMissing as exc:
        parser.error(str(exc))
    if args.official_site is not None and not args.official_site.is_dir():
        parser.error(f"--official-site {args.official_site} is not a directory")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    deadline = time.monotonic() + args.limit_s
    with tempfile.TemporaryDirectory(prefix="bench-compare-", dir=args.scratch) as scratch:
        checkpoint, pages = Path(scratch) / "checkpoint", Path(scratch) / "pages"
        started = time.perf_counter()
        write_checkpoint_of_size(checkpoint, args.size)
        page_files = write_pages(pages, args.pages)
        print(
            f"wrote the {args.size} random checkpoint and {args.pages} pages "
            f"in {time.perf_counter() - started:.0f} s"
        )
        ours_until = time.monotonic() + OURS_SHARE * (deadline - time.monotonic())
        ours = run_ours(checkpoint, page_files, args, until=ours_until)
        stage_official_code(args.official, checkpoint)
        official = run_official(checkpoint, page_files, args, deadline, Path(scratch))
    print_comparison(args, ours, official)


def write_checkpoint_of_size(directory: Path, size: str) -> Path:
    """The released architecture (``full``) or the tiny one, with seeded random bf16 weights."""
    import torch

    from bench.engine import write_random_checkpoint
    from worker.engine.deepseek.architecture import DeepSeekOcrArchitecture
    from worker.engine.deepseek.tiny_checkpoint import TINY_ARCHITECTURE

    architecture = DeepSeekOcrArchitecture() if size == "full" else TINY_ARCHITECTURE
    return write_random_checkpoint(directory, architecture, torch.bfloat16)


def write_pages(directory: Path, count: int) -> list[Path]:
    """``count`` synthetic A4 pages at 144 dpi as PNG (lossless: both paths read the same pixels)."""
    from bench.engine import PAGE_SIZE
    from worker.engine.deepseek.engine import synthetic_page

    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for number in range(1, count + 1):
        path = directory / f"page-{number}.png"
        synthetic_page(*PAGE_SIZE).save(path)
        files.append(path)
    return files


def run_ours(
    checkpoint: Path, page_files: list[Path], args: argparse.Namespace, *, until: float
) -> dict[str, dict[str, Timings]]:
    """Per mode: the pages in one batch, then one at a time; nothing more is started after ``until``."""
    import torch
    from PIL import Image

    from bench.engine import measure, run_pages
    from scriptorium.modes import Mode
    from scriptorium.settings import EngineSettings
    from worker.engine.deepseek.loader import load_model

    settings = EngineSettings(model_path=str(checkpoint), device=args.device, dtype="bfloat16")
    loaded = load_model(settings)
    print(f"our engine: loaded in {loaded.load_seconds:.1f} s, attention={loaded.attention}", flush=True)
    images = [Image.open(path).convert("RGB") for path in page_files]
    run_pages(loaded, Mode.BASE, images[:1], new_tokens=4)  # warm-up
    results: dict[str, dict[str, Timings]] = {}
    for name in args.modes:
        batched, alone = Timings(), Timings()
        results[name] = {"batched": batched, "one by one": alone}
        if time.monotonic() > until:
            continue
        read = partial(run_pages, loaded, Mode(name), new_tokens=args.new_tokens)
        prompts, together = measure(partial(read, images), loaded.device)
        batched.pages, batched.seconds, batched.prompt_tokens = len(images), together.seconds, prompts
        for image in images:
            if time.monotonic() > until:
                break
            prompts, single = measure(partial(read, [image]), loaded.device)
            alone.pages += 1
            alone.seconds += single.seconds
            alone.prompt_tokens += prompts
    del loaded
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


def run_official(
    checkpoint: Path, page_files: list[Path], args: argparse.Namespace, deadline: float, scratch: Path
) -> dict[str, Timings]:
    """The official ``infer()`` in its own process; whatever it measured before the deadline."""
    command = [
        sys.executable,
        "-m",
        "bench.official_deepseek",
        "--checkpoint",
        str(checkpoint),
        "--pages",
        *map(str, page_files),
        "--modes",
        ",".join(args.modes),
        "--new-tokens",
        str(args.new_tokens),
        "--attention",
        args.attention,
    ]
    results: dict[str, Timings] = {}
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        print("official code: not run, the time limit was reached first")
        return results
    try:
        completed = subprocess.run(
            command,
            env=official_environment(args.official_site, scratch),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=remaining,
            check=False,
        )
        output, failed = completed.stdout, completed.returncode != 0
        errors = completed.stderr
    except subprocess.TimeoutExpired as stopped:
        output = _text(stopped.stdout)
        errors, failed = _text(stopped.stderr), False
        print(f"official code: stopped at the time limit ({args.limit_s:.0f} s); partial results below")
    for event in read_events(output):
        if event["event"] == "loaded":
            print(
                f"official code: loaded in {event['seconds']:.1f} s, "
                f"transformers {event['transformers']}, "
                f"torch {event['torch']}, attention={event['attention']}"
            )
        elif event["event"] == "page":
            timing = results.setdefault(str(event["mode"]), Timings())
            if int(event["new_tokens"]) != args.new_tokens:
                raise SystemExit(
                    f"the official path generated {event['new_tokens']} tokens, not {args.new_tokens}"
                )
            timing.pages += 1
            timing.seconds += float(event["seconds"])
            timing.prompt_tokens.append(int(event["prompt_tokens"]))
    if failed:
        print("official code failed; the end of its error output:\n" + errors[-4000:])
    return results


def official_environment(site: Path | None, scratch: Path) -> dict[str, str]:
    """This environment with the official packages first on the import path and a scratch HF cache."""
    environment = dict(os.environ)
    paths = [str(site)] if site is not None else []
    paths.append(str(ROOT))  # for bench.official_deepseek itself, which imports nothing of the project
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment["HF_HOME"] = str(scratch / "hf-home")  # trust_remote_code copies the model code there
    environment["HF_HUB_OFFLINE"] = environment["TRANSFORMERS_OFFLINE"] = "1"
    return environment


def read_events(output: str) -> list[dict[str, object]]:
    """The JSON event lines of the official run (the official code prints other lines too)."""
    events = []
    for line in output.splitlines():
        if not line.startswith('{"event"'):
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def print_comparison(
    args: argparse.Namespace, ours: dict[str, dict[str, Timings]], official: dict[str, Timings]
) -> None:
    print(
        f"\n{args.pages} A4 pages per mode, exactly {args.new_tokens} new tokens per page, "
        f"bf16, {args.device}"
    )
    header = (
        f"{'mode':<8}{'path':<36}{'prompt tok':>11}{'pages':>6}{'seconds':>9}{'pages/s':>9}{'tokens/s':>10}"
    )
    print(header)
    print("-" * len(header))
    for mode in args.modes:
        rows = [
            (f"ours, batch of {args.pages}", ours[mode]["batched"]),
            ("ours, one by one", ours[mode]["one by one"]),
        ]
        rows.append(("official infer(), one by one", official.get(mode, Timings())))
        for path, timing in rows:
            prompt = statistics.median(timing.prompt_tokens) if timing.prompt_tokens else 0
            print(
                f"{mode:<8}{path:<36}{prompt:>11.0f}{timing.pages:>6}{timing.seconds:>9.1f}"
                f"{timing.pages_per_s():>9.2f}{timing.pages_per_s() * args.new_tokens:>10.0f}"
            )
        reference = official.get(mode)
        if reference and reference.pages:
            for path, timing in rows[:2]:
                print(f"{'':<8}{path} / official: {timing.pages_per_s() / reference.pages_per_s():.2f}x")


def _modes(text: str) -> list[str]:
    names = list(OFFICIAL_MODES) if text == "all" else text.split(",")
    unknown = [name for name in names if name not in OFFICIAL_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {', '.join(unknown)}")
    return names


def _text(captured: str | bytes | None) -> str:
    if captured is None:
        return ""
    return captured.decode("utf-8", errors="replace") if isinstance(captured, bytes) else captured


if __name__ == "__main__":
    main()
