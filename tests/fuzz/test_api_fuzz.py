"""Property-based fuzzing of the running API against its published OpenAPI schema.

Schemathesis generates requests for every operation from the schema the API serves and sends
them to a real API process (real Postgres, Redis and S3, a tenant's key). Any 5xx answer, and
any answer that breaks the published schema, fails the test. Generation is bounded per
operation and derandomized, so the run is short and a failure reproduces.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.storage import ObjectStore
from tests.support import builders
from tests.support.fleet import Fleet, running_fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 12  # about a minute for the whole API on 2 shared cores
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def fuzzed_api(
    env: dict[str, str], store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    # No request limit: the fuzzer's bursts would otherwise only ever meet 429.
    limits = {"SCRIPTORIUM_RATE_LIMIT__REQUESTS_PER_S": "0"}
    with running_fleet({**env, **limits}, tmp_path_factory.mktemp("fuzz")) as fleet:
        fleet.start_api()
        yield fleet


@pytest.fixture(scope="module")
def tenant_key(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        key: str = builders.tenant(session).key
    return key


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, base_url: str, key: str) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS, timeout=30
        )

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_request_makes_the_api_fail_or_break_its_schema(
    fuzzed_api: Fleet, tenant_key: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_api.api_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _fuzz(operation, mode, fuzzed_api.api_url, tenant_key)
        except Unsatisfiable:  # nothing to get wrong: an operation without parameters or body
            continue
        except Exception as failure:  # collect every operation's failure, not only the first
            failures.append(f"{operation.method.upper()} {operation.path}: {failure}")
    assert operations > 20, "the schema lists the API's operations"
    assert not failures, "\n\n".join(failures)
