"""Under CI every test runs: what a developer's machine may lack skips a test there, fails it under CI.

CI runs ``CI=true bash .ci/run``, which installs and provides everything the suite needs, so a
missing prerequisite under CI is a broken setup, not a reason to skip.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NoReturn

import pytest

_TRUE = frozenset({"1", "true", "yes", "on"})


def running_in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``CI`` is set to a true value (``1``, ``true``, ``yes``, ``on``, any case)."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in _TRUE


def missing_prerequisite(message: str, *, environ: Mapping[str, str] | None = None) -> NoReturn:
    """Skip the calling test for ``message``; under CI fail it instead."""
    if running_in_ci(environ):
        pytest.fail(f"{message}; CI runs every test, so it must be there", pytrace=False)
    pytest.skip(message)
