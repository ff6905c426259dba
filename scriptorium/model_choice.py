"""Which model family reads a document, and refusing a choice the fleet cannot honour.

A document names its model at upload (the ``model`` field), or inherits it: from its batch's or
watch's options (a manifest line's own ``model`` first), then from its tenant's default
(``tenants.default_model``), then from the fleet's ``models.default`` setting. The first one
given decides; it must be a known family (``unknown_model``) that this fleet runs GPU workers for
(``models.served``; ``model_not_served``). Batches, watches and tenant defaults are checked when
they are set, so a choice that cannot be read is refused at once rather than per document.
"""

from __future__ import annotations

from scriptorium.errors import DomainError
from scriptorium.model_families import MODEL_FAMILY_NAMES, ModelFamily
from scriptorium.settings import ModelsSettings

UNKNOWN_MODEL = "unknown_model"
MODEL_NOT_SERVED = "model_not_served"


class ModelRejected(DomainError):
    """A model name that is not a known family, or a family this fleet does not serve."""

    status = 422


def served_names(models: ModelsSettings) -> str:
    return ", ".join(family.value for family in models.served)


def known_model(name: str) -> ModelFamily:
    """The family called ``name``, served or not; ModelRejected (unknown_model) otherwise."""
    try:
        return ModelFamily(name)
    except ValueError:
        raise ModelRejected(
            UNKNOWN_MODEL, f"unknown model {name!r}; the known models are {', '.join(MODEL_FAMILY_NAMES)}"
        ) from None


def checked_model(name: str, models: ModelsSettings) -> ModelFamily:
    """The family called ``name`` if this fleet serves it; ModelRejected otherwise."""
    family = known_model(name)
    if family not in models.served:
        raise ModelRejected(
            MODEL_NOT_SERVED,
            f"model {family.value!r} is not served by this fleet; it serves {served_names(models)}",
        )
    return family


def resolve_model(models: ModelsSettings, *choices: str | None) -> ModelFamily:
    """The first choice given, most specific first (the document's own, its batch's or watch's,
    its tenant's default), checked; the fleet's default when none is given."""
    for choice in choices:
        if choice:
            return checked_model(choice, models)
    return models.default
