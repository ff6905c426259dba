"""Run DeepSeek-OCR's own transformers code path (its ``infer()``) one page at a time, for timing.

Started by :mod:`bench.gpu_compare` as a separate process, because the published model code needs
the transformers release it was written for (4.46.3, with tokenizers 0.20.3), not the one the
engine serves with; so this module imports nothing of the project and only the standard library
at module level. The model code is never part of this repository: it is read at run time from a
checkout of the published model repository (``huggingface.co/deepseek-ai/DeepSeek-OCR``: the
``*.py`` files beside its ``config.json``), copied into the random-weight checkpoint directory,
and loaded the way the official script ``DeepSeek-OCR-master/DeepSeek-OCR-hf/run_dpsk_ocr.py``
does: ``AutoModel.from_pretrained(..., trust_remote_code=True)``, ``.eval().cuda()`` in bf16,
then ``model.infer(tokenizer, prompt=..., image_file=..., base_size, image_size, crop_mode)``
per page (with ``eval_mode=True``: no streaming to the console, the text is returned).

To time a fixed output length, the model's ``generate`` is wrapped so that every call produces
exactly ``--new-tokens`` tokens (``min_new_tokens`` = ``max_new_tokens``: end-of-sequence cannot
be chosen earlier), whatever ``infer()`` asks for; everything else ``infer()`` passes (greedy,
no-repeat n-gram size, cache) is left as the official code sets it.

    python -m bench.official_deepseek --checkpoint DIR --pages A.png B.png --modes base,gundam
        --new-tokens 512 [--attention eager] [--warmup-tokens 8]

Prints one JSON object per line: ``{"event": "loaded", ...}``, then one ``{"event": "page", ...}``
per page read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The files of the published model repository that ``trust_remote_code`` imports.
OFFICIAL_CODE_FILES = (
    "modeling_deepseekocr.py",
    "modeling_deepseekv2.py",
    "configuration_deepseek_v2.py",
    "deepencoder.py",
    "conversation.py",
)
# Where the published config.json points transformers' Auto classes.
OFFICIAL_AUTO_MAP = {
    "AutoConfig": "modeling_deepseekocr.DeepseekOCRConfig",
    "AutoModel": "modeling_deepseekocr.DeepseekOCRForCausalLM",
}
# The prompt of the official script (markdown with layout grounding).
OFFICIAL_PROMPT = "<image>\n<|grounding|>Convert the document to markdown. "


@dataclass(frozen=True)
class OfficialMode:
    """The ``infer()`` arguments the official script lists for each mode."""

    base_size: int
    image_size: int
    crop_mode: bool


OFFICIAL_MODES = {
    "tiny": OfficialMode(512, 512, False),
    "small": OfficialMode(640, 640, False),
    "base": OfficialMode(1024, 1024, False),
    "large": OfficialMode(1280, 1280, False),
    "gundam": OfficialMode(1024, 640, True),
}


class OfficialCodeMissing(Exception):
    """The directory given for the official model code is not there or lacks its files."""


def locate_official_code(directory: Path) -> dict[str, Path]:
    """The official model code files in ``directory`` (a checkout of the published model repository).

    Raises :class:`OfficialCodeMissing` with a sentence saying what is missing and how to get it.
    """
    how = (
        "pass a checkout of the published model repository, e.g. "
        "`GIT_LFS_SKIP_SMUDGE=1 git clone https://huggingface.co/deepseek-ai/DeepSeek-OCR` "
        "(its weights are not needed)"
    )
    if not directory.is_dir():
        raise OfficialCodeMissing(
            f"the official DeepSeek-OCR code directory {directory} does not exist; {how}"
        )
    found = {name: directory / name for name in OFFICIAL_CODE_FILES}
    missing = sorted(name for name, path in found.items() if not path.is_file())
    if missing:
        raise OfficialCodeMissing(
            f"{directory} is not a checkout of the DeepSeek-OCR model repository: "
            f"{', '.join(missing)} missing; {how}"
        )
    return found


def stage_official_code(official: Path, checkpoint: Path) -> None:
    """Copy the official code files into ``checkpoint`` and point its config.json's Auto classes at them.

    ``checkpoint`` is a scratch directory holding the random weights; nothing is written elsewhere.
    """
    for name, source in locate_official_code(official).items():
        shutil.copyfile(source, checkpoint / name)
    config_path = checkpoint / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    published = official / "config.json"
    auto_map = OFFICIAL_AUTO_MAP
    if published.is_file():
        auto_map = json.loads(published.read_text(encoding="utf-8")).get("auto_map", OFFICIAL_AUTO_MAP)
    config["auto_map"] = auto_map
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="random weights plus the official code"
    )
    parser.add_argument(
        "--pages", type=Path, nargs="+", required=True, help="page images, read one at a time"
    )
    parser.add_argument("--modes", type=_modes, default=list(OFFICIAL_MODES))
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--warmup-tokens", type=int, default=8, help="one untimed page first; 0 skips it")
    parser.add_argument(
        "--attention",
        default="eager",
        choices=["eager", "flash_attention_2"],
        help="the official script asks for flash_attention_2, which needs the flash-attn package",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    from transformers import AutoModel, AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(args.checkpoint), trust_remote_code=True)
    model = AutoModel.from_pretrained(
        str(args.checkpoint),
        _attn_implementation=args.attention,
        trust_remote_code=True,
        use_safetensors=True,
    )
    model = model.eval().cuda().to(torch.bfloat16)
    torch.cuda.synchronize()
    _emit(
        event="loaded",
        seconds=time.perf_counter() - started,
        transformers=sys.modules["transformers"].__version__,
        torch=torch.__version__,
        attention=args.attention,
    )
    lengths: list[tuple[int, int]] = []
    model.generate = fixed_length(model.generate, lengths)
    with tempfile.TemporaryDirectory(prefix="official-out-") as output_path:

        def read(page: Path, mode: OfficialMode, new_tokens: int) -> float:
            model.generate.new_tokens = new_tokens  # type: ignore[attr-defined]
            torch.cuda.synchronize()
            begun = time.perf_counter()
            model.infer(
                tokenizer,
                prompt=OFFICIAL_PROMPT,
                image_file=str(page),
                output_path=output_path,
                base_size=mode.base_size,
                image_size=mode.image_size,
                crop_mode=mode.crop_mode,
                eval_mode=True,
            )
            torch.cuda.synchronize()
            return time.perf_counter() - begun

        if args.warmup_tokens:
            read(args.pages[0], OFFICIAL_MODES["base"], args.warmup_tokens)
        for name in args.modes:
            for number, page in enumerate(args.pages, start=1):
                seconds = read(page, OFFICIAL_MODES[name], args.new_tokens)
                prompt_tokens, generated = lengths[-1]
                _emit(
                    event="page",
                    mode=name,
                    page=number,
                    prompt_tokens=prompt_tokens,
                    new_tokens=generated,
                    seconds=seconds,
                    peak_bytes=torch.cuda.max_memory_allocated(),
                )


def fixed_length(generate: Callable[..., Any], lengths: list[tuple[int, int]]) -> Callable[..., Any]:
    """``generate`` made to produce exactly ``wrapper.new_tokens`` tokens; records (prompt, generated)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        new_tokens = wrapper.new_tokens  # type: ignore[attr-defined]
        kwargs["max_new_tokens"] = new_tokens
        kwargs["min_new_tokens"] = new_tokens
        output = generate(*args, **kwargs)
        prompt = args[0] if args else kwargs["input_ids"]
        lengths.append((int(prompt.shape[1]), int(output.shape[1] - prompt.shape[1])))
        return output

    wrapper.new_tokens = 0  # type: ignore[attr-defined]
    return wrapper


def _modes(text: str) -> list[str]:
    names = list(OFFICIAL_MODES) if text == "all" else text.split(",")
    unknown = [name for name in names if name not in OFFICIAL_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(OFFICIAL_MODES)}"
        )
    return names


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


if __name__ == "__main__":
    main()
