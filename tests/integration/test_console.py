"""The console in-process against real Postgres, Redis and S3: sign-in, CSRF, isolation, rendering."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.console.auth import LOGIN_COOKIE, SESSION_COOKIE
from scriptorium.db.models import ApiKey, Document, Page
from scriptorium.model_families import ModelFamily
from scriptorium.settings import ModelsSettings, Settings
from scriptorium.states import DocumentState, PageState
from scriptorium.storage import ObjectStore, page_image_key
from tests.support import builders

pytestmark = pytest.mark.integration

HOSTILE = (
    "# Heading\n\n![](figures/p0001_0.jpg)\n\n<script>window.pwned = 1</script>\n\n"
    '<table><tr><td onmouseover="window.pwned = 2">cell</td></tr></table>\n\n'
    '[click](javascript:window.pwned=3) <img src=x onerror="window.pwned=4">\n\n'
    '<a id="evil-link" href="javascript:window.pwned=5">raw link</a>\n\n'
    "Euler: \\(e^{i\\pi} + 1 = 0\\)"
)


@pytest.fixture(scope="module")
def app_client(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def _form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def _new_client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), follow_redirects=False)


def _sign_in(client: TestClient, key: str) -> str:
    """Signs in and returns the session's CSRF token."""
    form = client.get("/console/login")
    response = client.post("/console/login", data={"api_key": key, "csrf_token": _form_token(form.text)})
    assert response.status_code == 303, response.text
    overview = client.get("/console")
    assert overview.status_code == 200, overview.text
    return _form_token(overview.text)


@pytest.fixture
def tenant_key(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        return builders.tenant(session).key


def _document_with_a_read_page(
    sessions: sessionmaker[Session], store: ObjectStore, key: str, *, markdown: str = HOSTILE
) -> uuid.UUID:
    with sessions.begin() as session:
        prefix = key.split("_")[1]
        api_key = session.query(ApiKey).filter_by(prefix=prefix).one()
        document = builders.document_with_pages(
            session, api_key.tenant, pages=2, state=DocumentState.PROCESSING, filename="scan.pdf"
        )
        image = io.BytesIO()
        Image.new("RGB", (1224, 1584), "white").save(image, "JPEG")
        for page_no in (1, 2):
            image_key = page_image_key(api_key.tenant_id, document.id, page_no)
            store.put_bytes(image_key, image.getvalue(), content_type="image/jpeg")
            session.execute(
                update(Page)
                .where(Page.document_id == document.id, Page.page_no == page_no)
                .values(image_key=image_key)
            )
        image_key_1 = page_image_key(api_key.tenant_id, document.id, 1)
        session.execute(
            update(Page)
            .where(Page.document_id == document.id, Page.page_no == 1)
            .values(
                state=PageState.DONE.value,
                mode="base",
                markdown=markdown,
                figures=[{"name": "figures/p0001_0.jpg", "key": image_key_1, "box": [100, 800, 600, 1200]}],
                blocks=[
                    {"label": "title", "boxes": [[100, 120, 900, 200]], "text": "# Heading"},
                    {
                        "label": "table",
                        "boxes": [[100, 300, 1100, 700]],
                        "text": "<table><tr><td>cell</td></tr></table>",
                    },
                ],
                routing={
                    "mode": "base",
                    "reason": "dense text",
                    "predicted_text_tokens": 420,
                    "facts": {"ink": 0.12},
                },
                ocr_attempts=[builders.attempt(mode="base", output=40).as_dict()],
                finished_at=func.now(),
            )
        )
        return document.id


def test_signing_in_exchanges_the_key_for_a_signed_httponly_cookie(
    settings: Settings, tenant_key: str
) -> None:
    with _new_client(settings) as client:
        assert client.get("/console").headers["location"] == "/console/login"
        form = client.get("/console/login")
        assert form.status_code == 200
        assert "script-src 'self'" in form.headers["content-security-policy"]
        assert "unsafe-inline" not in form.headers["content-security-policy"]
        token = _form_token(form.text)

        incomplete = client.post("/console/login", data={"csrf_token": token})
        assert incomplete.status_code == 422 and "api_key" in incomplete.text and "<html" in incomplete.text
        wrong = client.post("/console/login", data={"api_key": "sk_nope_nope", "csrf_token": token})
        assert wrong.status_code == 401 and "Not signed in: the API key is unknown" in wrong.text

        response = client.post("/console/login", data={"api_key": tenant_key, "csrf_token": token})
        assert response.status_code == 303
        cookie = next(
            v for k, v in response.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE + "=" in v
        )
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        assert tenant_key not in cookie and tenant_key.split("_")[2] not in cookie
        assert client.get("/console").status_code == 200

        genuine = client.cookies.get(SESSION_COOKIE, path="/console")
        assert genuine
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, genuine[:-2] + ("xx" if not genuine.endswith("xx") else "yy"))
        assert client.get("/console").status_code == 303  # a tampered cookie is no session


def test_the_sign_in_form_needs_its_csrf_token(settings: Settings, tenant_key: str) -> None:
    with _new_client(settings) as client:
        client.get("/console/login")
        response = client.post("/console/login", data={"api_key": tenant_key, "csrf_token": "forged"})
        assert response.status_code == 403
    with _new_client(settings) as fresh:  # no pre-session cookie at all
        response = fresh.post("/console/login", data={"api_key": tenant_key, "csrf_token": "x"})
        assert response.status_code == 403
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
        assert LOGIN_COOKIE


def test_state_changing_forms_need_the_session_token_and_this_origin(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session], store: ObjectStore
) -> None:
    document_id = _document_with_a_read_page(sessions, store, tenant_key)
    with _new_client(settings) as client:
        csrf = _sign_in(client, tenant_key)
        url = f"/console/documents/{document_id}/cancel"
        assert client.post(url, data={}).status_code == 403
        assert client.post(url, data={"csrf_token": "forged"}).status_code == 403
        evil = client.post(url, data={"csrf_token": csrf}, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403
        with sessions() as session:
            assert session.get(Document, document_id).state == DocumentState.PROCESSING.value  # type: ignore[union-attr]
        opaque = client.post(url, data={"csrf_token": csrf}, headers={"Origin": "null"})
        assert opaque.status_code == 403
        not_yet = client.get(f"/console/documents/{document_id}/result.md")
        assert not_yet.status_code == 409 and "not_ready" in not_yet.text
        done = client.post(url, data={"csrf_token": csrf}, headers={"Origin": "http://testserver"})
        assert done.status_code == 303
        result = client.get(f"/console/documents/{document_id}/result.md")
        assert result.status_code == 200 and result.headers["content-type"].startswith("text/markdown")
        assert result.headers["content-disposition"] == f'attachment; filename="{document_id}.md"'
        assert (
            client.get(f"/console/documents/{document_id}/result.json").json()["document"]["state"]
            == "cancelled"
        )
        assert client.get(f"/console/documents/{document_id}/result.txt").status_code == 404
        with sessions() as session:
            assert session.get(Document, document_id).state == DocumentState.CANCELLED.value  # type: ignore[union-attr]


def test_another_tenants_document_is_not_found(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session], store: ObjectStore
) -> None:
    with sessions.begin() as session:
        other_key = builders.tenant(session).key
    theirs = _document_with_a_read_page(sessions, store, other_key)
    with _new_client(settings) as client:
        _sign_in(client, tenant_key)
        for path in (
            f"/console/documents/{theirs}",
            f"/console/documents/{theirs}/pages/1",
            f"/console/documents/{theirs}/pages/1/image",
            f"/console/documents/{theirs}/pages/1/figures/figures/p0001_0.jpg",
            f"/console/documents/{theirs}/result.json",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "Not found" in response.text
        assert str(theirs) not in client.get("/console/documents").text
        assert client.get("/console/documents").status_code == 200


def test_the_page_viewer_draws_blocks_and_sanitises_model_output(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session], store: ObjectStore
) -> None:
    document_id = _document_with_a_read_page(sessions, store, tenant_key)
    with _new_client(settings) as client:
        _sign_in(client, tenant_key)
        response = client.get(f"/console/documents/{document_id}/pages/1")
        assert response.status_code == 200, response.text
        html = response.text
        assert 'viewBox="0 0 1224 1584"' in html
        assert re.search(
            r'<rect class="box label-title" data-block="0"[^>]* x="100" y="120" width="800" height="80"', html
        )
        assert re.search(
            r'<rect class="box label-table" data-block="1"[^>]* x="100" y="300" width="1000" height="400"',
            html,
        )
        assert "<script>window.pwned" not in html and "onmouseover" not in html and "onerror" not in html
        assert 'href="javascript' not in html and "raw link" in html
        assert '<span class="math">e^{i\\pi} + 1 = 0</span>' in html
        assert "<td>cell</td>" in html
        assert "dense text" in html and "420" in html
        assert 'id="next-page"' in html and 'id="previous-page"' not in html
        figure_url = f"/console/documents/{document_id}/pages/1/figures/figures/p0001_0.jpg"
        assert f'<img src="{figure_url}"' in html
        figure = client.get(figure_url)
        assert figure.status_code == 200 and figure.content[:2] == b"\xff\xd8"
        assert client.get(figure_url.replace("p0001_0", "p0001_9")).status_code == 404
        image = client.get(f"/console/documents/{document_id}/pages/1/image")
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        document = client.get(f"/console/documents/{document_id}")
        assert document.status_code == 200
        assert 'data-state="done"' in document.text and 'data-state="queued"' in document.text
        assert 'data-live="2000"' in document.text  # in flight: the page polls


def test_a_page_that_could_not_be_drawn_shows_why_instead_of_an_image(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session], store: ObjectStore
) -> None:
    document_id = _document_with_a_read_page(sessions, store, tenant_key)
    with sessions.begin() as session:
        session.execute(
            update(Page)
            .where(Page.document_id == document_id, Page.page_no == 2)
            .values(
                state=PageState.FAILED.value,
                width=0,
                height=0,
                error_code="corrupt",
                error_message="bad page",
            )
        )
    with _new_client(settings) as client:
        _sign_in(client, tenant_key)
        html = client.get(f"/console/documents/{document_id}/pages/2").text
        assert "could not be drawn: bad page" in html and 'id="page-image" src=' not in html
        thumbnail = client.get(f"/console/documents/{document_id}/pages/2/image")
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/svg+xml"
        assert "not drawn" in thumbnail.text


def test_documents_filter_by_file_name_and_state(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session], store: ObjectStore
) -> None:
    _document_with_a_read_page(sessions, store, tenant_key)
    with _new_client(settings) as client:
        _sign_in(client, tenant_key)
        assert "scan.pdf" in client.get("/console/documents", params={"q": "SCAN"}).text
        assert "scan.pdf" not in client.get("/console/documents", params={"q": "other_50%"}).text
        assert "scan.pdf" not in client.get("/console/documents", params={"state": "completed"}).text
        for page in (
            "/console",
            "/console/documents",
            "/console/batches",
            "/console/usage",
            "/console/webhooks",
        ):
            response = client.get(page)
            assert response.status_code == 200, page
            assert response.headers["content-security-policy"].startswith("default-src 'none'")
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["cache-control"] == "no-store"


def test_a_revoked_key_ends_its_sessions(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session]
) -> None:
    with _new_client(settings) as client:
        csrf = _sign_in(client, tenant_key)
        with sessions.begin() as session:
            session.execute(
                update(ApiKey).where(ApiKey.prefix == tenant_key.split("_")[1]).values(revoked_at=func.now())
            )
        assert client.get("/console").status_code == 303
        assert client.post("/console/logout", data={"csrf_token": csrf}).status_code == 303


def test_a_rotated_key_signs_in_until_its_grace_period_ends(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session]
) -> None:
    prefix = tenant_key.split("_")[1]
    with _new_client(settings) as client:
        with sessions.begin() as session:
            session.execute(
                update(ApiKey)
                .where(ApiKey.prefix == prefix)
                .values(expires_at=func.now() + timedelta(hours=1))
            )
        _sign_in(client, tenant_key)  # still in its grace period
        with sessions.begin() as session:
            session.execute(
                update(ApiKey)
                .where(ApiKey.prefix == prefix)
                .values(expires_at=func.now() - timedelta(seconds=1))
            )
        assert client.get("/console").status_code == 303
        form = client.get("/console/login")
        again = client.post(
            "/console/login", data={"api_key": tenant_key, "csrf_token": _form_token(form.text)}
        )
        assert again.status_code == 401 and "grace period is over" in again.text


def test_signing_out_clears_the_cookie(settings: Settings, tenant_key: str) -> None:
    with _new_client(settings) as client:
        csrf = _sign_in(client, tenant_key)
        response = client.post("/console/logout", data={"csrf_token": csrf})
        assert response.status_code == 303 and response.headers["location"] == "/console/login"
        assert client.get("/console").status_code == 303


def test_uploads_and_batch_actions_go_through_the_api(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session]
) -> None:
    with _new_client(settings) as client:
        csrf = _sign_in(client, tenant_key)
        files = {"file": ("memo.pdf", io.BytesIO(b"%PDF-1.4 console upload"))}
        refused = client.post("/console/documents", data={"csrf_token": csrf, "pages": "0-2"}, files=files)
        assert refused.status_code == 422 and "invalid_pages" in refused.text
        files = {"file": ("memo.pdf", io.BytesIO(b"%PDF-1.4 console upload"))}
        accepted = client.post("/console/documents", data={"csrf_token": csrf, "pages": "1"}, files=files)
        assert accepted.status_code == 303
        document_id = uuid.UUID(accepted.headers["location"].rsplit("/", 1)[-1])
        with sessions() as session:
            document = session.get(Document, document_id)
            assert document is not None and document.filename == "memo.pdf" and document.page_selection == "1"

        api = {"Authorization": f"Bearer {tenant_key}"}
        batch = client.post("/v1/batches", headers=api, data={"name": "open uploads"}).json()
        page = client.get(f"/console/batches/{batch['id']}")
        assert page.status_code == 200 and "open uploads" in page.text and "Cancel" in page.text
        assert client.post(f"/console/batches/{batch['id']}/cancel", data={}).status_code == 403
        cancelled = client.post(f"/console/batches/{batch['id']}/cancel", data={"csrf_token": csrf})
        assert cancelled.status_code == 303
        assert client.get(f"/v1/batches/{batch['id']}", headers=api).json()["state"] == "cancelled"
        retry = client.post(f"/console/batches/{batch['id']}/retry-failed", data={"csrf_token": csrf})
        assert retry.status_code == 409 and "Something is wrong" in retry.text
        report = client.get(f"/console/batches/{batch['id']}/report.csv")
        assert report.status_code == 200 and report.text.startswith("seq,")
        usage = client.get("/console/usage.csv", params={"group_by": "mode"})
        assert usage.status_code == 200 and usage.headers["content-type"].startswith("text/csv")


def test_an_upload_chooses_among_the_served_models_and_the_document_shows_its_model(
    settings: Settings, tenant_key: str, sessions: sessionmaker[Session]
) -> None:
    served = ModelsSettings(served=[ModelFamily.DEEPSEEK_OCR, ModelFamily.UNLIMITED_OCR])
    with _new_client(settings.model_copy(update={"models": served})) as client:
        csrf = _sign_in(client, tenant_key)
        form = client.get("/console/documents").text
        assert '<option value="unlimited-ocr">' in form and '<option value="deepseek-ocr">' in form
        files = {"file": ("memo.pdf", io.BytesIO(b"%PDF-1.4 " + uuid.uuid4().bytes))}
        data = {"csrf_token": csrf, "model": "unlimited-ocr"}
        accepted = client.post("/console/documents", data=data, files=files)
        assert accepted.status_code == 303
        document_id = uuid.UUID(accepted.headers["location"].rsplit("/", 1)[-1])
        with sessions() as session:
            document = session.get(Document, document_id)
            assert document is not None and document.model == "unlimited-ocr"
        assert "model unlimited-ocr" in client.get(f"/console/documents/{document_id}").text
        assert "By model" in client.get("/console/usage").text
        files = {"file": ("memo.pdf", io.BytesIO(b"%PDF-1.4 unknown model"))}
        refused = client.post("/console/documents", data={**data, "model": "ocr"}, files=files)
        assert refused.status_code == 422 and "unknown_model" in refused.text


def test_the_overview_counts_only_the_tenants_work_in_flight(sessions: sessionmaker[Session]) -> None:
    from scriptorium.activity import tenant_activity

    with sessions.begin() as session:
        mine = builders.tenant(session).tenant
        theirs = builders.tenant(session).tenant
        document = builders.document_with_pages(session, mine, pages=3)
        builders.document_with_pages(session, theirs, pages=4)
        session.execute(
            update(Page)
            .where(Page.document_id == document.id, Page.page_no == 2)
            .values(state=PageState.RUNNING.value)
        )
        session.execute(
            update(Page)
            .where(Page.document_id == document.id, Page.page_no == 3)
            .values(state=PageState.DONE.value, finished_at=func.now())
        )
        finished = builders.document_with_pages(session, mine, pages=1, state=DocumentState.COMPLETED)
        session.execute(
            update(Page)
            .where(Page.document_id == finished.id)
            .values(state=PageState.DONE.value, finished_at=func.now() - timedelta(hours=2))
        )
    with sessions() as session:
        activity = tenant_activity(session, mine.id)
    assert activity.documents_in_flight == {"processing": 1}
    assert activity.pages_in_flight == {"queued": 1, "running": 1}
    assert activity.pages_finished_last_hour == 1
    assert activity.pages_per_s == pytest.approx(1 / 3600)
    assert activity.oldest_queued_age_s is not None and 0 <= activity.oldest_queued_age_s < 60
