"""The console in a real headless Chromium against a running fleet with the test engine.

One tenant signs in, uploads a PDF through the form and watches it finish without reloading,
inspects a page (boxes over the image where the blocks are; hostile model output that does not
run), follows a batch to completion, replays a webhook delivery, and cannot see another tenant's
document.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page
from tests.browser.conftest import Screenshots
from tests.integration.webhooks.receiver import Receiver
from tests.support.client import ApiClient
from tests.support.fleet import Fleet
from worker.engine.deepseek.postprocess import parse_output

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
HOSTILE = (
    "# Hostile output\n\n<script>window.pwned = 'script'</script>\n\n"
    '<table><tr><td id="cell" onmouseover="window.pwned = \'handler\'">cell</td></tr></table>\n\n'
    '<img src="/nowhere.png" onerror="window.pwned = \'onerror\'">\n\n'
    "<a href=\"javascript:window.pwned = 'link'\">raw link</a> and [md link](javascript:alert(1))\n\n"
    "Energy: \\(E = mc^2\\)"
)


@dataclass
class Tenant:
    client: ApiClient
    key: str
    endpoint: dict[str, Any]


@pytest.fixture(scope="module")
def tenant(fleet: Fleet, sessions: sessionmaker[Session], receiver: Receiver) -> Tenant:
    client = ApiClient.for_new_tenant(fleet, sessions)
    key = client.http.headers["Authorization"].removeprefix("Bearer ")
    response = client.http.post("/v1/webhooks/endpoints", json={"url": receiver.url()})
    assert response.status_code == 201, response.text
    return Tenant(client=client, key=key, endpoint=response.json())


@pytest.fixture(scope="module")
def uploaded(
    browser: webdriver.Chrome, fleet: Fleet, tenant: Tenant, corpus: Path, screenshots: Screenshots
) -> str:
    """Signs in and uploads through the console's form; the document's id."""
    browser.get(f"{fleet.api_url}/console")
    assert browser.current_url.endswith("/console/login")
    screenshots.take("sign-in")
    browser.find_element(By.ID, "api_key").send_keys(tenant.key)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "header nav a.active"), "the overview")
    assert "Overview" in browser.title

    browser.get(f"{fleet.api_url}/console/documents")
    browser.find_element(By.ID, "upload-file").send_keys(str(corpus / "pdf-real" / "multi_page.pdf"))
    browser.find_element(By.NAME, "pages").send_keys("1-3")
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    _wait(browser, lambda d: "/console/documents/" in d.current_url, "the document page")
    return browser.current_url.rstrip("/").rsplit("/", 1)[-1]


def _wait(browser: webdriver.Chrome, condition: Callable[[Any], T], what: str, timeout: float = 90) -> T:
    waiting = WebDriverWait(
        browser, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    )  # live regions are swapped under the test's feet: look again
    result: T = waiting.until(condition, message=f"waiting for {what}")
    return result


def _text(browser: webdriver.Chrome, selector: str) -> str:
    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def _mark_no_reload(browser: webdriver.Chrome) -> None:
    browser.execute_script("window.__sameDocument = true;")


def _not_reloaded(browser: webdriver.Chrome) -> bool:
    return browser.execute_script("return window.__sameDocument === true;") is True


def _assert_boxes_where_blocks_are(browser: webdriver.Chrome, page: dict[str, Any]) -> None:
    """Each SVG box covers its block's page-pixel box scaled to the image as displayed."""
    image = browser.find_element(By.ID, "page-image")
    assert browser.execute_script("return arguments[0].naturalWidth;", image) == page["width"]
    shown = _box(browser, image)
    scale = shown["w"] / page["width"]
    rects = browser.find_elements(By.CSS_SELECTOR, "#page-boxes rect.box")
    expected = [box for block in page["blocks"] for box in block["boxes"]]
    assert len(rects) == len(expected) >= 1
    for rect, (x1, y1, x2, y2) in zip(rects, expected, strict=True):
        drawn = _box(browser, rect)
        assert drawn["x"] == pytest.approx(shown["x"] + x1 * scale, abs=2)
        assert drawn["y"] == pytest.approx(shown["y"] + y1 * scale, abs=2)
        assert drawn["w"] == pytest.approx((x2 - x1) * scale, abs=2)
        assert drawn["h"] == pytest.approx((y2 - y1) * scale, abs=2)


def _box(browser: webdriver.Chrome, element: WebElement) -> dict[str, float]:
    box: dict[str, float] = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height};",
        element,
    )
    return box


def test_an_upload_is_watched_to_completion_without_reloading(
    browser: webdriver.Chrome, uploaded: str, tenant: Tenant, screenshots: Screenshots
) -> None:
    _mark_no_reload(browser)
    first_state = _text(browser, "#document-summary .state")
    assert first_state in ("received", "preparing", "processing"), first_state
    _wait(browser, lambda d: _text(d, "#document-summary .state") == "completed", "the document to complete")
    assert _not_reloaded(browser), "the page reloaded instead of updating in place"
    states = [t.get_attribute("data-state") for t in browser.find_elements(By.CSS_SELECTOR, "li.thumb")]
    assert states == ["done", "done", "done"]
    assert browser.find_elements(By.LINK_TEXT, "Markdown") and browser.find_elements(By.LINK_TEXT, "JSON")
    assert tenant.client.document(uploaded)["state"] == "completed"
    _wait(
        browser, lambda d: d.execute_script("return [...document.images].every(i => i.complete);"), "thumbs"
    )
    screenshots.take("document")


def test_the_page_viewer_draws_each_block_where_it_is(
    browser: webdriver.Chrome, fleet: Fleet, uploaded: str, tenant: Tenant
) -> None:
    browser.get(f"{fleet.api_url}/console/documents/{uploaded}")
    browser.find_element(By.CSS_SELECTOR, "li.thumb a").click()
    _wait(
        browser,
        lambda d: d.execute_script("return document.getElementById('page-image').naturalWidth > 0;"),
        "image",
    )
    page = tenant.client.page(uploaded, 1)
    _assert_boxes_where_blocks_are(browser, page)
    rects = browser.find_elements(By.CSS_SELECTOR, "#page-boxes rect.box")
    rects[0].click()
    assert "active" in (browser.find_element(By.ID, "block-0").get_attribute("class") or "")
    assert page["markdown"].splitlines()[0].lstrip("# ") in browser.find_element(By.ID, "page-markdown").text
    assert browser.find_elements(By.ID, "next-page") and not browser.find_elements(By.ID, "previous-page")
    attempts = browser.find_elements(By.CSS_SELECTOR, "#page-attempts tbody tr")
    assert len(attempts) == len(page["ocr_attempts"])
    browser.find_element(By.ID, "next-page").click()
    _wait(browser, lambda d: d.current_url.endswith("/pages/2"), "page 2")


def test_hostile_model_output_does_not_execute(
    browser: webdriver.Chrome, fleet: Fleet, uploaded: str, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        session.execute(
            update(Page)
            .where(Page.document_id == uuid.UUID(uploaded), Page.page_no == 2)
            .values(markdown=HOSTILE)
        )
    browser.get(f"{fleet.api_url}/console/documents/{uploaded}/pages/2")
    article = browser.find_element(By.ID, "page-markdown")
    assert "Hostile output" in article.text and "raw link" in article.text
    ActionChains(browser).move_to_element(
        article.find_element(By.XPATH, ".//td[contains(., 'cell')]")
    ).perform()
    article.find_element(By.PARTIAL_LINK_TEXT, "raw link").click()
    _wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#page-markdown .math[data-typeset] .katex"),
        "KaTeX",
    )
    assert browser.execute_script("return window.pwned === undefined;") is True
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()
    markup = article.get_attribute("innerHTML") or ""
    for forbidden in ("<script", "onmouseover", "onerror", 'href="javascript'):
        assert forbidden not in markup
    assert not browser.find_elements(By.CSS_SELECTOR, "#page-markdown a[href^='javascript' i]")


def test_the_page_viewer_shows_real_model_output(
    browser: webdriver.Chrome,
    fleet: Fleet,
    tenant: Tenant,
    corpus: Path,
    sessions: sessionmaker[Session],
    screenshots: Screenshots,
) -> None:
    """DeepSeek-OCR's published output for a real page, parsed by the engine's post-processing and
    recorded on that page (the test fleet's engine is deterministic): many labelled boxes, an HTML
    table and a formula."""
    document = tenant.client.upload(corpus / "pages-labelled" / "academic" / "2305.03393v1-pg9.pdf")
    assert tenant.client.wait_terminal(document["id"])["state"] == "completed"
    size = tenant.client.page(document["id"], 1)
    raw = (corpus / "model-output-fixtures" / "2305.03393v1-pg9.deepseek-raw.md").read_text()
    parsed = parse_output(raw, page_no=1, image=Image.new("RGB", (size["width"], size["height"])))
    blocks = [
        {"label": b.label, "boxes": [list(box) for box in b.boxes], "text": b.text} for b in parsed.blocks
    ]
    with sessions.begin() as session:
        session.execute(
            update(Page)
            .where(Page.document_id == uuid.UUID(document["id"]), Page.page_no == 1)
            .values(markdown=parsed.markdown, blocks=blocks)
        )
    page = tenant.client.page(document["id"], 1)
    assert len({block["label"] for block in page["blocks"]}) >= 4

    browser.get(f"{fleet.api_url}/console/documents/{document['id']}/pages/1")
    _wait(
        browser,
        lambda d: d.execute_script("return document.getElementById('page-image').naturalWidth > 0;"),
        "image",
    )
    _assert_boxes_where_blocks_are(browser, page)
    legend = {item.text for item in browser.find_elements(By.CSS_SELECTOR, "ul.legend li")}
    assert legend == {block["label"] for block in page["blocks"]}
    assert browser.find_elements(By.CSS_SELECTOR, "#page-markdown table td")
    _wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#page-markdown .math[data-typeset] .katex"),
        "KaTeX",
    )
    table = next(i for i, block in enumerate(page["blocks"]) if block["label"] == "table")
    ActionChains(browser).move_to_element(
        browser.find_element(By.CSS_SELECTOR, f"rect[data-block='{table}']")
    ).perform()
    assert "active" in (browser.find_element(By.ID, f"block-{table}").get_attribute("class") or "")
    screenshots.take("page-viewer")


def test_a_batch_is_followed_to_completion(
    browser: webdriver.Chrome, fleet: Fleet, tenant: Tenant, corpus: Path, screenshots: Screenshots
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(corpus / "pdf-real" / "crazyones.pdf", "letters/crazyones.pdf")
        zipped.write(corpus / "pdf-real" / "linn.pdf", "letters/linn.pdf")
        zipped.writestr("letters/notes.txt", "not a document")
    response = tenant.client.http.post(
        "/v1/batches",
        files={"archive": ("letters.zip", archive.getvalue(), "application/zip")},
        data={"name": "letters", "pages": "1"},
    )
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    browser.get(f"{fleet.api_url}/console/batches/{batch_id}")
    _mark_no_reload(browser)
    _wait(browser, lambda d: _text(d, "#batch-summary .state") == "completed", "the batch to complete")
    assert _not_reloaded(browser)
    progress = browser.find_element(By.CSS_SELECTOR, "#batch-progress progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == "3"
    rows = browser.find_elements(By.CSS_SELECTOR, "#batch-report tbody tr")
    outcomes = sorted(row.find_elements(By.CSS_SELECTOR, "td")[2].text for row in rows)
    assert len(outcomes) == 3 and outcomes.count("done") == 2, outcomes
    assert browser.find_element(By.LINK_TEXT, "Report CSV").get_attribute("href").endswith("/report.csv")
    screenshots.take("batch")

    browser.find_element(By.XPATH, "//button[normalize-space()='Retry failed']").click()
    _wait(browser, lambda d: "round 2" in _text(d, "#batch-summary"), "the retry's round")
    _mark_no_reload(browser)
    _wait(
        browser, lambda d: _text(d, "#batch-summary .state") == "completed", "the retried batch to complete"
    )
    assert _not_reloaded(browser)
    retried = [
        row
        for row in browser.find_elements(By.CSS_SELECTOR, "#batch-report tbody tr")
        if "notes.txt" in row.text
    ]
    assert (
        retried and retried[0].find_elements(By.CSS_SELECTOR, "td")[-1].text == "2"
    )  # a new try, history kept
    browser.get(f"{fleet.api_url}/console/batches")
    screenshots.take("batches")


def test_a_webhook_delivery_is_replayed(
    browser: webdriver.Chrome,
    fleet: Fleet,
    uploaded: str,
    tenant: Tenant,
    receiver: Receiver,
    screenshots: Screenshots,
) -> None:
    def delivery_row(d: Any) -> WebElement | None:
        for row in d.find_elements(By.CSS_SELECTOR, "#webhook-deliveries tbody tr[data-delivery]"):
            if "document.completed" in row.text and f"/console/documents/{uploaded}" in (
                row.find_element(By.LINK_TEXT, "document").get_attribute("href") or ""
            ):
                return row
        return None

    browser.get(f"{fleet.api_url}/console/webhooks")
    first = _wait(
        browser, lambda d: (row := delivery_row(d)) and "delivered" in row.text and row, "the delivery"
    )
    delivery_id = first.get_attribute("data-delivery")
    assert first.find_element(By.CSS_SELECTOR, ".attempts").text == "1"
    before = len(receiver.requests())
    selector = f"tr[data-delivery='{delivery_id}']"

    def replay(d: Any) -> bool:
        d.find_element(By.CSS_SELECTOR, f"{selector} button").click()
        return True

    _wait(browser, replay, "the replay button")
    _wait(
        browser,
        lambda d: (
            (row := d.find_element(By.CSS_SELECTOR, selector)).find_element(By.CSS_SELECTOR, ".attempts").text
            == "2"
            and "delivered" in row.text
        ),
        "the replayed delivery",
    )
    delivery = tenant.client.http.get(f"/v1/webhooks/deliveries/{delivery_id}").json()
    received = receiver.requests()
    assert len(received) == before + 1
    same = [r for r in received if r.webhook_id == delivery["webhook_id"]]
    assert len(same) == 2 and same[0].body == same[1].body  # the same message, sent again
    screenshots.take("webhooks")


def test_another_tenants_document_is_not_found(
    browser: webdriver.Chrome, fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    stranger = ApiClient.for_new_tenant(fleet, sessions)
    theirs = stranger.upload(corpus / "pdf-real" / "crazyones.pdf")["id"]
    browser.get(f"{fleet.api_url}/console/documents/{theirs}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    browser.get(f"{fleet.api_url}/console/documents?q=crazyones")
    assert theirs not in browser.page_source


def test_overview_and_usage_show_the_tenants_work(
    browser: webdriver.Chrome, fleet: Fleet, uploaded: str, screenshots: Screenshots
) -> None:
    browser.get(f"{fleet.api_url}/console/usage")
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.bars rect")
    assert any(float(bar.get_attribute("height") or 0) > 0 for bar in bars)
    screenshots.take("usage")
    browser.get(f"{fleet.api_url}/console")
    assert "multi_page.pdf" in browser.find_element(By.ID, "overview-documents").text
    screenshots.take("overview")
    browser.get(f"{fleet.api_url}/console/documents")
    screenshots.take("documents")
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    _wait(browser, lambda d: d.current_url.endswith("/console/login"), "the sign-in page")


def test_no_console_page_broke_its_own_content_security_policy(browser: webdriver.Chrome) -> None:
    """Runs last: every page the tests opened worked under the strict CSP (nothing was blocked)."""
    entries = browser.get_log("browser")
    violations = [e["message"] for e in entries if "Content Security Policy" in e["message"]]
    assert not violations, violations
    errors = [e["message"] for e in entries if e["level"] == "SEVERE" and "nowhere.png" not in e["message"]]
    assert not [m for m in errors if "/console/static/" in m], errors
