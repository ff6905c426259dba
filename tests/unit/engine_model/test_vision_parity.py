"""The vision path and the image-embedding sequence against values computed by the official code.

See ``parity.py`` for how ``fixtures/vision_parity.json`` was made. The checkpoint here is written
in the published layout from the same seeded weights and read by the engine's own loader, so the
test covers the tensor-name mapping, the serving config and the model's maths together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from scriptorium.modes import MODE_ORDER, Mode
from tests.unit.engine_model.parity import (
    GUNDAM_GRID,
    VISION_PARITY_ARCHITECTURE,
    WEIGHT_SEED,
    parity_inputs,
    sample_positions,
)
from worker.engine.deepseek.checkpoint import inspect_checkpoint
from worker.engine.deepseek.loader import load_weights
from worker.engine.deepseek.tiny_checkpoint import random_weights, write_checkpoint

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "vision_parity.json").read_text())
# float32 differences to the official code are ~1e-5 on values of a few units (reference notes, section 1)
ABSOLUTE_TOLERANCE = 2e-4
RELATIVE_TOLERANCE = 1e-5

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def parity_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("vision-parity")
    write_checkpoint(
        directory, VISION_PARITY_ARCHITECTURE, random_weights(VISION_PARITY_ARCHITECTURE, seed=WEIGHT_SEED)
    )
    return load_weights(
        inspect_checkpoint(directory),
        VISION_PARITY_ARCHITECTURE,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


def test_the_fixture_matches_the_parity_setup() -> None:
    assert GOLDEN["weight_seed"] == WEIGHT_SEED
    assert GOLDEN["sam_layers"] == VISION_PARITY_ARCHITECTURE.sam.layers
    assert GOLDEN["clip_layers"] == VISION_PARITY_ARCHITECTURE.clip.layers
    assert set(GOLDEN["modes"]) == {mode.value for mode in MODE_ORDER}


@pytest.mark.parametrize("mode", MODE_ORDER)
def test_image_embedding_sequence_matches_the_official_code(parity_model: Any, mode: Mode) -> None:
    golden = GOLDEN["modes"][mode.value]
    global_view, tiles = parity_inputs(mode)
    with torch.inference_mode():
        sequence = parity_model.model.get_image_features(
            global_view,
            tiles,
            [tiles.shape[0]] if tiles is not None else None,
            [list(GUNDAM_GRID)] if tiles is not None else None,
        ).pooler_output[0]

    assert sequence.shape[0] == golden["sequence_length"]
    newline = parity_model.model.image_newline
    separator = parity_model.model.view_separator
    rows = range(sequence.shape[0])
    assert [row for row in rows if torch.equal(sequence[row], newline)] == golden["newline_positions"]
    assert [row for row in rows if torch.equal(sequence[row], separator)] == golden["separator_positions"]

    positions = sample_positions(sequence.shape[0], sequence.shape[1], len(golden["samples"]), mode)
    assert positions == [(row, column) for row, column, _ in golden["samples"]]
    ours = torch.tensor([float(sequence[row, column]) for row, column in positions], dtype=torch.float64)
    expected = torch.tensor([value for _, _, value in golden["samples"]], dtype=torch.float64)
    torch.testing.assert_close(ours, expected, atol=ABSOLUTE_TOLERANCE, rtol=RELATIVE_TOLERANCE)
    torch.testing.assert_close(
        sequence.double().norm(dim=1),
        torch.tensor(golden["row_norms"], dtype=torch.float64),
        atol=ABSOLUTE_TOLERANCE * 10,
        rtol=RELATIVE_TOLERANCE,
    )
    assert float(sequence.double().norm()) == pytest.approx(golden["norm"], rel=1e-5)
