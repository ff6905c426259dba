"""Which model reads a document: the settings that say what the fleet serves, the resolution order
(document, batch or watch, tenant, fleet) and the two refusals."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from scriptorium.acceptance import DocumentOptions, resolve_spec
from scriptorium.batches.manifest import parse_line
from scriptorium.batches.states import IntakeReason, IntakeRefused
from scriptorium.model_choice import MODEL_NOT_SERVED, UNKNOWN_MODEL, ModelRejected, resolve_model
from scriptorium.model_families import ModelFamily
from scriptorium.settings import ModelsSettings, Settings
from scriptorium.states import Lane
from worker.ingestion import Owner, _spec

DEEPSEEK, UNLIMITED = ModelFamily.DEEPSEEK_OCR, ModelFamily.UNLIMITED_OCR
BOTH = ModelsSettings(served=[DEEPSEEK, UNLIMITED], default=UNLIMITED)


def test_a_fleet_serves_deepseek_ocr_alone_unless_told_otherwise() -> None:
    models = Settings(_env_file=None).models  # type: ignore[call-arg]
    assert models.served == [DEEPSEEK] and models.default is DEEPSEEK


def test_the_served_models_and_the_default_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTORIUM_MODELS__SERVED", '["deepseek-ocr", "unlimited-ocr"]')
    monkeypatch.setenv("SCRIPTORIUM_MODELS__DEFAULT", "unlimited-ocr")
    models = Settings(_env_file=None).models  # type: ignore[call-arg]
    assert models.served == [DEEPSEEK, UNLIMITED] and models.default is UNLIMITED


@pytest.mark.parametrize(
    ("served", "default", "complaint"),
    [
        (["deepseek-ocr"], "unlimited-ocr", "not in models.served"),
        (["deepseek-ocr", "tesseract"], "deepseek-ocr", "served"),
        ([], "deepseek-ocr", "served"),
    ],
)
def test_a_default_outside_the_served_models_or_an_unknown_family_stops_the_process(
    served: list[str], default: str, complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        ModelsSettings.model_validate({"served": served, "default": default})


def test_the_most_specific_choice_wins_and_the_fleet_default_comes_last() -> None:
    assert resolve_model(BOTH, "deepseek-ocr", "unlimited-ocr") is DEEPSEEK  # the document's own
    assert resolve_model(BOTH, None, "deepseek-ocr") is DEEPSEEK  # then the tenant's
    assert resolve_model(BOTH, None, None) is UNLIMITED  # then the fleet's
    assert resolve_model(BOTH, "", None) is UNLIMITED  # an empty form field names nothing


def test_an_unknown_model_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ModelRejected) as rejected:
        resolve_model(BOTH, "deepseek-ocr-2")
    assert rejected.value.code == UNKNOWN_MODEL and rejected.value.status == 422
    assert "deepseek-ocr, unlimited-ocr" in rejected.value.message


def test_a_known_model_this_fleet_does_not_serve_is_refused() -> None:
    with pytest.raises(ModelRejected) as rejected:
        resolve_model(ModelsSettings(), "unlimited-ocr")
    assert rejected.value.code == MODEL_NOT_SERVED and "serves deepseek-ocr" in rejected.value.message


def test_an_unserved_tenant_default_is_refused_even_when_the_fleet_default_would_do() -> None:
    with pytest.raises(ModelRejected) as rejected:
        resolve_model(ModelsSettings(), None, "unlimited-ocr")
    assert rejected.value.code == MODEL_NOT_SERVED


def test_a_spec_carries_the_resolved_model() -> None:
    def spec_model(options: DocumentOptions, tenant_model: str | None) -> str:
        return resolve_spec(
            options, tenant_policy=None, default_priority=Lane.BULK, models=BOTH, tenant_model=tenant_model
        ).model

    assert spec_model(DocumentOptions(), None) == "unlimited-ocr"
    assert spec_model(DocumentOptions(), "deepseek-ocr") == "deepseek-ocr"
    assert spec_model(DocumentOptions(model="unlimited-ocr"), "deepseek-ocr") == "unlimited-ocr"


def test_a_manifest_line_s_model_overrides_its_batch_s_and_the_tenant_s() -> None:
    batch = DocumentOptions(model="deepseek-ocr", task="markdown")
    owner = Owner(tenant_id=uuid.uuid4(), name="t", routing_policy=None, default_model=None)
    own = parse_line(1, '{"uri": "s3://archive/scans/a.pdf", "model": "unlimited-ocr"}')
    plain = parse_line(2, '{"uri": "s3://archive/scans/b.pdf"}')
    assert own is not None and own.options is not None and plain is not None and plain.options is not None

    overridden = _spec(own.options.over(batch), owner, BOTH)
    inherited = _spec(plain.options.over(batch), owner, BOTH)
    assert not isinstance(overridden, IntakeRefused) and overridden.model == "unlimited-ocr"
    assert not isinstance(inherited, IntakeRefused) and inherited.model == "deepseek-ocr"


def test_a_manifest_line_naming_an_unserved_model_is_a_rejected_input_with_the_reason() -> None:
    owner = Owner(tenant_id=uuid.uuid4(), name="t", routing_policy=None, default_model=None)
    line = parse_line(1, '{"uri": "s3://archive/scans/a.pdf", "model": "unlimited-ocr"}')
    assert line is not None and line.options is not None

    refused = _spec(line.options, owner, ModelsSettings())

    assert isinstance(refused, IntakeRefused) and refused.reason is IntakeReason.INVALID_OPTIONS
    assert refused.message.startswith("model_not_served:")
