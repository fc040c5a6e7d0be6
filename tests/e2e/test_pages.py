"""The pages in a real browser (Debian's Chromium, headless, driven by Selenium through /usr/bin/chromedriver): a
person finds an order a producer placed, a worker claims and confirms its pick, pack and ship on the worker app
(phone-sized), and the console shows it shipped. Screenshots go to ``.baton/artifacts/`` (and, with
``BATON_SCREENSHOTS=DIR``, to DIR too: ``docs/screenshots/`` for the README)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.envelope import encode, envelope_for
from schemas.orders import OrderPlaced
from schemas.topics import ORDERS_INBOUND
from services.runtime.admin import ensure_topics
from services.runtime.settings import Settings
from tests.support import load_network_and_stock, ship_order, warehouse

pytestmark = pytest.mark.e2e
LOC = "WH-1"
ARTIFACTS = Path(".baton/artifacts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def console(settings: Settings) -> Iterator[str]:
    """The services (no simulated workers) and ``baton web``; the console's URL."""
    asyncio.run(ensure_topics(settings, [LOC]))
    asyncio.run(load_network_and_stock(settings, [warehouse(LOC)], {(LOC, "TEE"): 10, (LOC, "MUG"): 5}))
    running = ServiceSet(settings, [LOC], auto_workers=False)
    running.start()
    port = free_port()
    env = {**running.env(), "PATH": "/usr/bin:/bin"}
    web = subprocess.Popen([sys.executable, "-m", "baton", "web", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        asyncio.run(running.wait_ready())
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(url)
        yield url
    finally:
        try:
            web.terminate()
            web.wait(timeout=20)
        finally:
            if web.poll() is None:
                web.kill()
            running.stop()


def wait_until_answers(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    copies = os.environ.get("BATON_SCREENSHOTS")
    if copies:
        Path(copies).mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / f"{name}.png", Path(copies) / f"{name}.png")


def click(wait: WebDriverWait[webdriver.Chrome], xpath: str) -> None:
    """Click the element once it is there (the pages re-render their lists: a found element may be replaced)."""
    def clicked(driver: webdriver.Chrome) -> bool:
        found = driver.find_elements(By.XPATH, xpath)
        if not found:
            return False
        found[0].click()
        return True

    wait.until(clicked)


def work_the_task(driver: webdriver.Chrome, wait: WebDriverWait[webdriver.Chrome], kind: str, order_id: str) -> None:
    """Claim the order's task of ``kind`` on the worker app and confirm it (all units found)."""
    click(wait, f'//button[@data-kind="{kind}"]')
    task = f'//div[@class="task"][.//h3[text()="{order_id}"]]'
    click(wait, f"{task}//button[@data-claim]")
    wait.until(lambda d: d.find_elements(By.XPATH, f"{task}//button[@data-confirm]"))
    if kind == "pick":
        screenshot(driver, "worker-pick")
    click(wait, f"{task}//button[@data-confirm]")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "message"), f"Confirmed {kind}"))


def test_an_order_is_found_worked_and_shown_shipped(settings: Settings, console: str,
                                                    browser: webdriver.Chrome) -> None:
    async def place() -> None:
        async with Publisher(settings) as publisher:
            await publisher.publish(ORDERS_INBOUND, "WEB-1", ship_order("WEB-1", {"TEE": 2, "MUG": 1}))

    asyncio.run(place())
    wait = WebDriverWait(browser, 60, poll_frequency=0.5, ignored_exceptions=[StaleElementReferenceException])

    # a person finds the order
    browser.get(console)
    search = browser.find_element(By.ID, "q")
    search.send_keys("WEB-1")

    def found(driver: webdriver.Chrome) -> bool:  # search again until the read model has the order
        driver.find_element(By.ID, "search").submit()
        return bool(driver.find_elements(By.ID, "order-status"))

    wait.until(found)
    first_seen = wait.until(lambda d: d.find_element(By.ID, "order-status").text)
    assert first_seen != "shipped"  # nobody has worked it yet

    # a worker works it on a phone-sized screen
    browser.set_window_size(412, 915)
    browser.get(f"{console}/worker/{LOC}")
    browser.find_element(By.ID, "worker").send_keys("ana")
    for kind in ("pick", "pack", "ship"):
        work_the_task(browser, wait, kind, "WEB-1")
    screenshot(browser, "worker-shipped")

    # the console shows it shipped (live: server-sent events from the read model)
    browser.set_window_size(1280, 1000)
    browser.get(console)
    browser.find_element(By.ID, "q").send_keys("WEB-1")
    browser.find_element(By.ID, "search").submit()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "order-status"), "shipped"))
    wait.until(lambda d: "wms" in d.find_element(By.ID, "graph").text)
    wait.until(lambda d: "up" in d.find_element(By.ID, "services").text)
    screenshot(browser, "console-shipped")
    assert "TEE" in browser.find_element(By.ID, "lines").text
    assert "TEE" in browser.find_element(By.ID, "stock").text


def test_a_dead_letter_is_corrected_and_republished_with_an_audit(settings: Settings, console: str,
                                                                  browser: webdriver.Chrome) -> None:
    placed = ship_order("WEB-2", {"TEE": 1})
    broken = {**encode_envelope(placed), "data": {**placed.model_dump(mode="json"), "lines": "two tees"}}

    async def publish_broken() -> None:
        async with Publisher(settings) as publisher:
            await publisher.publish_raw(ORDERS_INBOUND, "WEB-2", orjson.dumps(broken))

    asyncio.run(publish_broken())
    wait = WebDriverWait(browser, 60, poll_frequency=0.5, ignored_exceptions=[StaleElementReferenceException])
    browser.get(console)
    letter = '//table[@id="letters"]//tr[td[contains(., "WEB-2")]]'
    wait.until(lambda d: d.find_elements(By.XPATH, letter))
    assert "invalid order.placed.v1 data" in browser.find_element(By.XPATH, letter).text

    corrected = orjson.dumps(encode_envelope(placed)).decode()
    fix = browser.find_element(By.XPATH, f"{letter}//textarea")
    browser.execute_script("arguments[0].value = arguments[1]", fix, corrected)  # a person pastes the fix
    browser.find_element(By.XPATH, f"{letter}//input").send_keys("lines restored from the storefront")
    browser.find_element(By.ID, "auditor").send_keys("ops-ana")
    click(wait, f"{letter}//button")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "letters-message"), "Re-published"))
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "audit"), "ops-ana"))
    assert "lines restored" in browser.find_element(By.ID, "audit").text
    browser.execute_script("document.getElementById('letters').scrollIntoView()")
    screenshot(browser, "console-dead-letter")

    # the corrected order went through like any other
    browser.find_element(By.ID, "q").send_keys("WEB-2")

    def found(driver: webdriver.Chrome) -> bool:
        driver.find_element(By.ID, "search").submit()
        return bool(driver.find_elements(By.ID, "order-status"))

    wait.until(found)


def encode_envelope(message: OrderPlaced) -> dict[str, object]:
    envelope = envelope_for(message, source="storefront", correlationid=message.order_id, causationid=None)
    return dict(orjson.loads(encode(envelope)))
