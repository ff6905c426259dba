"""A headless Chromium (Debian's package, driven through its chromedriver) against a running fleet."""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from scriptorium.storage import ObjectStore
from tests.integration.webhooks.conftest import webhook_env_vars
from tests.integration.webhooks.receiver import Receiver, running_receiver
from tests.support.ci import missing_prerequisite
from tests.support.fleet import Fleet, running_fleet

# Set to a folder (docs/console to refresh the README's pictures) to keep the screenshots.
SCREENSHOTS_ENV = "SCRIPTORIUM_CONSOLE_SCREENSHOTS"
WINDOW = (1280, 860)
MAX_SCREENSHOT_HEIGHT = 1500


def _binary(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium = _binary("chromium", "chromium-browser")
    driver_path = _binary("chromedriver")
    if chromium is None or driver_path is None:
        missing_prerequisite("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations are logged there
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str], store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    extra = {**webhook_env_vars(), "FAKE_ENGINE_DELAY_S": "0.4"}  # slow enough to watch pages move
    with running_fleet({**env, **extra}, tmp_path_factory.mktemp("browser-fleet")) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_gpu_worker()
        fleet.start_beat()
        yield fleet


class Screenshots:
    """Saves what the browser shows, small (palette PNG), when SCRIPTORIUM_CONSOLE_SCREENSHOTS is set."""

    def __init__(self, driver: webdriver.Chrome, folder: Path | None) -> None:
        self.driver = driver
        self.folder = folder

    def take(self, name: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        height = min(int(metrics["cssContentSize"]["height"]), MAX_SCREENSHOT_HEIGHT)
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WINDOW[0], "height": height, "scale": 1},
            },
        )
        image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
        image.quantize(colors=128, dither=Image.Dither.NONE).save(self.folder / f"{name}.png", optimize=True)


@pytest.fixture(scope="module")
def screenshots(browser: webdriver.Chrome) -> Screenshots:
    target = os.environ.get(SCREENSHOTS_ENV)
    return Screenshots(browser, Path(target).resolve() if target else None)
