import json
from pathlib import Path

from api.app import openapi_document

PUBLISHED = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_published_openapi_matches_the_code() -> None:
    published = json.loads(PUBLISHED.read_text())
    assert published == json.loads(json.dumps(openapi_document())), (
        "docs/openapi.json is stale: run `scriptorium openapi --output docs/openapi.json`"
    )


def test_every_route_is_versioned_or_a_probe() -> None:
    paths = openapi_document()["paths"]
    assert isinstance(paths, dict)
    assert all(path.startswith("/v1/") or path in {"/healthz", "/readyz", "/metrics"} for path in paths)
