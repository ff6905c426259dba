"""Document options: batch defaults under per-input overrides, resolved against the tenant's policy."""

from __future__ import annotations

import pytest

from scriptorium.acceptance import DocumentOptions, OptionsRejected, resolve_spec
from scriptorium.errors import InputRejected
from scriptorium.settings import ModelsSettings
from scriptorium.states import Lane

MODELS = ModelsSettings()


def test_an_input_overrides_its_batch_and_merges_policy_and_metadata() -> None:
    batch = DocumentOptions(
        task="markdown", policy={"max_mode": "large", "target_ratio": 8}, metadata={"a": 1}
    )
    item = DocumentOptions(
        mode="small", policy={"target_ratio": 6}, metadata={"b": 2}, priority=Lane.INTERACTIVE
    )
    merged = item.over(batch)
    assert merged.task == "markdown" and merged.mode == "small" and merged.priority is Lane.INTERACTIVE
    assert merged.policy == {"max_mode": "large", "target_ratio": 6}
    assert merged.metadata == {"a": 1, "b": 2}


def test_a_spec_layers_request_over_tenant_and_defaults_the_lane() -> None:
    spec = resolve_spec(
        DocumentOptions(policy={"target_ratio": 6}),
        tenant_policy={"max_mode": "base"},
        default_priority=Lane.BULK,
        models=MODELS,
    )
    assert spec.task == "markdown" and spec.priority is Lane.BULK and spec.dedup is True
    assert spec.routing_policy["target_ratio"] == 6 and spec.routing_policy["max_mode"] == "base"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (DocumentOptions(mode="enormous"), "invalid_policy"),
        (DocumentOptions(policy={"min_mode": "large", "max_mode": "tiny"}), "invalid_policy"),
        (DocumentOptions(metadata={"blob": "x" * 20_000}), "invalid_metadata"),
    ],
)
def test_bad_options_are_rejected_with_the_api_codes(options: DocumentOptions, code: str) -> None:
    with pytest.raises(OptionsRejected) as rejected:
        resolve_spec(options, tenant_policy=None, default_priority=Lane.BULK, models=MODELS)
    assert rejected.value.code == code


def test_a_bad_page_selection_is_rejected() -> None:
    with pytest.raises(InputRejected):
        resolve_spec(
            DocumentOptions(pages="3-1"), tenant_policy=None, default_priority=Lane.BULK, models=MODELS
        )


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(OptionsRejected) as rejected:
        DocumentOptions.parse({"colour": "red"})
    assert rejected.value.code == "invalid_options" and "colour" in rejected.value.message
