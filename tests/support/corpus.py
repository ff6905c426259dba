"""Where the shared document corpus is, and what a test does when it is not there.

The corpus is never copied into the repository: it lies beside the checkout, as
``<checkout>/../shared/corpus``. On a developer's machine without it the tests that read it are
skipped; under CI (``CI`` set to a true value, as ``CI=true bash .ci/run``) it must be there, so a
missing corpus fails those tests and names the path that was looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.support.ci import missing_prerequisite

CHECKOUT = Path(__file__).resolve().parents[2]
CORPUS = CHECKOUT.parent / "shared" / "corpus"


def corpus_path(*parts: str) -> Path:
    """A path inside the corpus, for defaults of benches and scripts; nothing is checked."""
    return CORPUS.joinpath(*parts)


def require_corpus(*parts: str, root: Path = CORPUS, environ: Mapping[str, str] | None = None) -> Path:
    """The corpus folder ``root/parts…`` for a test: skips the test when it is missing, fails it under CI."""
    folder = root.joinpath(*parts)
    if folder.is_dir():
        return folder
    missing_prerequisite(
        f"the shared corpus is not at {folder} (it belongs beside the checkout, as ../shared/corpus)",
        environ=environ,
    )
