"""What the vision parity fixture was computed from: the network, its seed and its inputs.

``fixtures/vision_parity.json`` holds values computed once by the official DeepSeek-OCR vision
code (``DeepSeek-OCR-vllm/deepencoder``: SAM ViT-B, CLIP-L, linear projector, and the feature
arrangement of ``deepseek_ocr.py``) with weights drawn by ``seeded_tensor`` from the same seed,
fed the same input tensors. Real widths and heads; 2 SAM blocks (one windowed, one global, so
both attention kinds and the relative-position interpolation run) and 2 CLIP layers, to keep
the test within a minute on two cores.
"""

from __future__ import annotations

import torch

from scriptorium.modes import MODE_SPECS, TILE_SIZE, Mode
from worker.engine.deepseek.architecture import (
    ClipArchitecture,
    DecoderArchitecture,
    DeepSeekOcrArchitecture,
    SamArchitecture,
)

WEIGHT_SEED = 20251020
INPUT_SEED = 7
GUNDAM_GRID = (2, 3)  # columns, rows: an A4 portrait page

VISION_PARITY_ARCHITECTURE = DeepSeekOcrArchitecture(
    sam=SamArchitecture(layers=2, global_attn_indexes=(1,)),
    clip=ClipArchitecture(layers=2),
    decoder=DecoderArchitecture(vocab_size=512, intermediate_size=256, num_hidden_layers=1),
)


def parity_inputs(mode: Mode) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global view ``[1, 3, S, S]`` and, for gundam, the tiles ``[6, 3, 640, 640]`` of ``mode``."""
    generator = torch.Generator().manual_seed(INPUT_SEED * 100 + list(Mode).index(mode))
    side = MODE_SPECS[mode].base_size
    global_view = torch.rand((1, 3, side, side), generator=generator) * 2 - 1
    if mode is not Mode.GUNDAM:
        return global_view, None
    columns, rows = GUNDAM_GRID
    tiles = torch.rand((columns * rows, 3, TILE_SIZE, TILE_SIZE), generator=generator) * 2 - 1
    return global_view, tiles


def sample_positions(length: int, width: int, count: int, mode: Mode) -> list[tuple[int, int]]:
    """Fixed (row, column) positions of the image-embedding sequence to record values at."""
    generator = torch.Generator().manual_seed(INPUT_SEED * 1000 + list(Mode).index(mode))
    rows = torch.randint(0, length, (count,), generator=generator)
    columns = torch.randint(0, width, (count,), generator=generator)
    return list(zip(rows.tolist(), columns.tolist(), strict=True))
