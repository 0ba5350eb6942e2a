"""The live page in headless Chromium (Debian's chromium + chromium-driver; `make browser` installs them)
against the shipped PanWorld student: frames arrive, the arrow keys move the camera away and back, a prompt
switch applies, the memory panel updates, and closing the page frees the session. Selected by
`pytest -k browser`.

The screenshot goes to the test's temporary directory; `make screenshot` copies it to docs/images/serve.png
(CF_SERVE_SCREENSHOT names the destination).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request

from selenium import webdriver  # a test dependency: missing, the test fails (never skips)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from context_forcing.codecs import build_codec
from context_forcing.io.files import atomic_write
from context_forcing.memory.layout import run_layout
from context_forcing.model.checkpoint import load_model
from context_forcing.model.shipped import shipped_checkpoint
from context_forcing.serve.app import ServeConfig
from context_forcing.serve.background import BackgroundServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser():
    # run, not skip: a missing browser is a setup failure (`make browser` installs it)
    assert CHROMIUM and CHROMEDRIVER, "Chromium and chromedriver are missing: run `make browser`"
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,760",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _status(server) -> dict:
    with urllib.request.urlopen(f"{server.url}/status", timeout=10) as response:
        return json.loads(response.read())


def _number(driver, element_id: str) -> int:
    return int(driver.find_element(By.ID, element_id).text)


def _memory(driver, part: str) -> list[int]:
    """The frames a memory panel shows, read in one script call: the page replaces the thumbnails as chunks
    arrive, so element handles found first and read later can go stale."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), i => Number(i.dataset.frame));",
        f"#memory-{part} img",
    )


def _hold(driver, key, until, wait: WebDriverWait) -> None:
    ActionChains(driver).key_down(key).perform()
    try:
        wait.until(until)
    finally:
        ActionChains(driver).key_up(key).perform()


def test_browser_live_session(tmp_path):
    checkpoint = shipped_checkpoint("panworld")
    assert checkpoint is not None, "the shipped PanWorld student is part of the package"
    run, model = load_model(checkpoint)
    config = ServeConfig(
        model=model.eval(),
        run=run,
        codec=build_codec(run.codec, run.video),
        layout=run_layout(run),
        checkpoint="shipped panworld student",
        max_sessions=1,
    )
    with BackgroundServer(config) as server:
        driver = _browser()
        try:
            wait = WebDriverWait(driver, 60, poll_frequency=0.1)
            driver.get(server.url + "/")
            wait.until(lambda d: d.find_element(By.ID, "start").is_enabled())
            driver.find_element(By.ID, "start").click()
            wait.until(lambda d: _number(d, "frames-received") >= 12 + 6)  # 3 s opening + two chunks
            assert (
                driver.find_element(By.ID, "frame").get_attribute("src").startswith("data:image/png;base64,")
            )
            assert _memory(driver, "sink") == [0, 1, 2]
            fast_before = _memory(driver, "fast")
            body = driver.find_element(By.TAG_NAME, "body")
            body.click()
            x0 = _number(driver, "camera-x")
            away, back = (
                (Keys.ARROW_RIGHT, Keys.ARROW_LEFT) if x0 < 80 else (Keys.ARROW_LEFT, Keys.ARROW_RIGHT)
            )
            sign = 1 if away == Keys.ARROW_RIGHT else -1
            _hold(driver, away, lambda d: sign * (_number(d, "camera-x") - x0) >= 24, wait)
            far = _number(driver, "camera-x")
            _hold(driver, back, lambda d: sign * (_number(d, "camera-x") - x0) <= 0, wait)
            assert (
                sign * (far - x0) >= 24 and abs(_number(driver, "camera-x") - x0) <= 12
            )  # back within a chunk
            # a prompt switch, re-caching the fast memory
            Select(driver.find_element(By.ID, "attr-palette")).select_by_value(
                str(
                    (int(Select(driver.find_element(By.ID, "attr-palette")).first_selected_option.text) + 1)
                    % 4
                )
            )
            Select(driver.find_element(By.ID, "policy")).select_by_value("recache")
            driver.find_element(By.ID, "switch").click()
            wait.until(lambda d: "switched (recache)" in d.find_element(By.ID, "prompt-status").text)
            # the memory panel follows the stream: fast moved on, slow memory holds admitted frames,
            # decisions listed
            wait.until(lambda d: _memory(d, "slow") and _memory(d, "fast") != fast_before)
            assert driver.find_elements(By.CSS_SELECTOR, "#events li")
            sources = driver.execute_script(
                "return Array.from(document.querySelectorAll('#memory img'), i => i.src);"
            )
            assert sources and all(src.startswith("data:image/png") for src in sources)
            assert driver.find_element(By.ID, "error").text == ""
            assert _status(server)["active_sessions"] == 1
            shot = tmp_path / "serve.png"
            driver.save_screenshot(str(shot))
            assert shot.stat().st_size > 10_000
            destination = os.environ.get("CF_SERVE_SCREENSHOT")
            if destination:
                with atomic_write(destination) as temp:
                    shutil.copyfile(shot, temp)
            page = driver.current_window_handle
            driver.switch_to.new_window("tab")
            driver.switch_to.window(page)
            driver.close()  # the page's tab closes; the browser stays
            deadline = time.monotonic() + 15
            while _status(server)["active_sessions"] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _status(server)["active_sessions"] == 0
        finally:
            driver.quit()
