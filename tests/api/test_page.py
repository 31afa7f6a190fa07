"""The review page in headless Chromium against a real ``tagger api`` process and redis-server: look a
document up, correct its tags, and find the correction in the Redis stream. Saves a screenshot.

Needs Debian's chromium and chromium-driver (``apt-get install -y chromium chromium-driver``) and selenium
(the [dev] extra); skips, saying which is missing, without them. Selenium drives the system's ChromeDriver,
whose version Debian keeps matched to its Chromium, so no browser is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api.support import TOKEN, ApiProcess, record, write_documents
from worker.learn.registry import Registry
from worker.services import Service
from worker.store.keys import CORRECTIONS

pytestmark = pytest.mark.integration

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (in the [dev] extra)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TEXT = "Crude oil prices rose sharply after the pipeline closed."


def _binary(*names: str) -> str:
    found = next((path for path in map(shutil.which, names) if path), None)
    if found is None:
        pytest.skip(f"{names[0]} not found; install it with: apt-get install -y chromium chromium-driver")
    return found


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium driven by the system's ChromeDriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=_binary("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


@pytest.fixture()
def served(redis_service: Service, registry: Registry, client: redis.Redis, tmp_path: Path) -> Iterator[ApiProcess]:
    """``tagger api`` on the test's Redis and registry, with two tagged documents."""
    write_documents(client, [record("news/oil-1", [("topic-00", 0.91), ("topic-03", 0.4)], text=TEXT, offset=1,
                                    ts=1_700_000_000_000),
                             record("news/grain-2", [("topic-04", 0.8)], offset=2, ts=1_700_000_100_000)])
    process = ApiProcess({"TAGGER_REDIS_URL": f"redis://{redis_service.address}/0",
                          "TAGGER_MODEL_DIR": str(registry.root), "TAGGER_DEVICE": "cpu", "TAGGER_API_TOKEN": TOKEN,
                          "TAGGER_TORCH_THREADS": "1"}, tmp_path / "api.log")
    process.wait_ready()
    yield process
    assert process.stop() == 0, process.log_path.read_text()[-2000:]


def _text(driver: Any, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def test_look_up_and_correct_a_document(browser: Any, served: ApiProcess, client: redis.Redis,
                                        registry: Registry, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 20)
    browser.get(served.base + "/")
    wait.until(lambda d: [li.get_attribute("data-id") for li in d.find_elements(By.CSS_SELECTOR, "#recent li")]
               == ["news/grain-2", "news/oil-1"])
    wait.until(lambda d: _text(d, "live-model") == registry.current())

    browser.find_element(By.ID, "doc-id").send_keys("news/oil-1")
    browser.find_element(By.ID, "lookup").click()
    wait.until(lambda d: _text(d, "doc-text") == TEXT)
    rows = browser.find_elements(By.CSS_SELECTOR, "#tags tbody tr")
    assert [(row.get_attribute("data-label"), row.find_elements(By.TAG_NAME, "td")[2].text) for row in rows] == [
        ("topic-00", "0.910"), ("topic-03", "0.400")]
    assert _text(browser, "doc-model") == "v-test"

    rows[1].find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    browser.find_element(By.ID, "add-labels").send_keys("topic-05")
    browser.find_element(By.ID, "user").send_keys("pat")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: "queued" in _text(d, "message"))

    ((_, fields),) = client.xrange(CORRECTIONS)
    assert fields[b"id"] == b"news/oil-1" and fields[b"user"] == b"pat"
    assert json.loads(fields[b"add"]) == ["topic-05"] and json.loads(fields[b"remove"]) == ["topic-03"]
    _screenshot(browser, tmp_path)


def test_a_refused_correction_shows_the_servers_reason(browser: Any, served: ApiProcess, client: redis.Redis) -> None:
    wait = WebDriverWait(browser, 20)
    browser.get(served.base + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#recent li"))
    browser.find_element(By.CSS_SELECTOR, "#recent li[data-id='news/grain-2']").click()
    wait.until(lambda d: _text(d, "doc-shown-id") == "news/grain-2")
    browser.find_element(By.ID, "add-labels").send_keys("topic-05")
    browser.find_element(By.ID, "user").send_keys("pat")
    browser.find_element(By.ID, "token").send_keys("wrong-token")
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: "does not match" in _text(d, "message"))
    assert browser.find_element(By.ID, "message").get_attribute("class") == "error"
    assert client.xlen(CORRECTIONS) == 0


def _screenshot(browser: Any, tmp_path: Path) -> None:
    """Save the page as it looks after the correction (also to $TAGGER_SCREENSHOT_DIR when set)."""
    path = tmp_path / "review-page.png"
    assert browser.save_screenshot(str(path)) and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("TAGGER_SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["TAGGER_SCREENSHOT_DIR"]) / path.name)
