"""The web page in a real headless chromium: upload a query, see k results, browse the evaluation view."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (test extra)")
uvicorn = pytest.importorskip("uvicorn")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from trytry_reid.serving.app import create_app  # noqa: E402
from trytry_reid.serving.index import GalleryIndex  # noqa: E402
from trytry_reid.serving.inference import load_model  # noqa: E402

from test_app import embed_paths, write_eval_run  # noqa: E402
from test_export import write_images, write_tiny_checkpoint  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1100,900")
MATCH_RGB, MISS_RGB = "rgba(0, 160, 0, 1)", "rgba(215, 0, 0, 1)"   # as chromium reports colours


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn on 127.0.0.1 in a thread, serving a tiny model's index and an evaluation run."""
    root = tmp_path_factory.mktemp("browser")
    loaded = load_model(write_tiny_checkpoint(root / "tiny.pt"))
    images = write_images(root / "gallery", 12, seed=5)
    index = GalleryIndex(32)
    index.add(embed_paths(loaded, images), [str(p) for p in images])
    index.save(root / "index")
    app = create_app(root / "index", loaded, eval_run=write_eval_run(root / "gallery" / "run.json", images))
    port = free_loopback_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start on 127.0.0.1")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", images
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, condition, what: str, timeout: float = 20):
    """Poll ``condition`` (elements replaced by the page's own updates mid-check are simply re-polled)."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(
        condition, message=f"timed out waiting for {what}")


def assert_not_blank(png: Path) -> None:
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 300 and pixels.std() > 10, f"screenshot {png} looks blank"


def test_upload_a_query_and_see_k_results_then_search_by_click(server, browser, tmp_path):
    base, images = server
    browser.get(base + "/")
    wait_for(browser, lambda d: "12 gallery images" in d.find_element(By.ID, "health").text, "health line")
    k_box = browser.find_element(By.ID, "k")
    k_box.clear()
    k_box.send_keys("5")
    browser.find_element(By.ID, "query-file").send_keys(str(images[3]))
    browser.find_element(By.ID, "search-button").click()
    figures = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results figure"), "results")
    assert len(figures) == 5 and figures[0].get_attribute("data-id") == "3"
    assert figures[0].find_element(By.CLASS_NAME, "distance").text == "0.0000"
    assert images[3].name in figures[0].text
    wait_for(browser, lambda d: all(d.execute_script("return arguments[0].naturalWidth", img) > 0
                                    for img in d.find_elements(By.CSS_SELECTOR, "#results img")), "images")
    browser.save_screenshot(str(tmp_path / "search.png"))
    assert_not_blank(tmp_path / "search.png")
    clicked = figures[2].get_attribute("data-id")
    figures[2].find_element(By.TAG_NAME, "img").click()
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#results figure").get_attribute("data-id")
             == clicked, "search by the clicked result")


def test_an_invalid_upload_shows_the_error_message(server, browser, tmp_path):
    base, _ = server
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is text, not a jpeg")
    browser.get(base + "/")
    browser.find_element(By.ID, "query-file").send_keys(str(not_image))
    browser.find_element(By.ID, "search-button").click()
    status = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#status.error"), "error line")
    assert "415" in status.text and "not a readable image" in status.text


def test_evaluation_view_sorts_by_ap_colours_matches_and_shows_details(server, browser, tmp_path):
    base, images = server
    browser.get(base + "/")
    browser.find_element(By.ID, "eval-link").click()
    rows = wait_for(browser, lambda d: d.find_elements(By.CLASS_NAME, "eval-row"), "evaluation rows")
    assert [r.get_attribute("data-row") for r in rows] == ["1", "2", "0"]      # worst AP first
    assert rows[0].find_element(By.CLASS_NAME, "ap").text == "AP 0.200"
    borders = [f.find_element(By.TAG_NAME, "img").value_of_css_property("border-top-color")
               for f in rows[0].find_elements(By.CSS_SELECTOR, "figure.match, figure.miss")]
    assert borders == [MISS_RGB, MISS_RGB, MATCH_RGB]
    browser.find_element(By.ID, "sort-button").click()
    wait_for(browser, lambda d: d.find_element(By.CLASS_NAME, "eval-row").get_attribute("data-row") == "0",
             "best-first order")
    browser.find_elements(By.CLASS_NAME, "eval-row")[1].click()
    detail = wait_for(browser, lambda d: d.find_element(By.ID, "detail") if d.find_element(By.ID, "detail")
                      .is_displayed() else None, "detail table")
    assert images[8].name in detail.text and len(detail.find_elements(By.CSS_SELECTOR, "tbody tr")) == 2
    browser.save_screenshot(str(tmp_path / "eval.png"))
    assert_not_blank(tmp_path / "eval.png")


def test_results_show_the_threshold_and_an_unknown_query_says_no_match(server, browser, tmp_path):
    base, images = server
    browser.get(base + "/")
    wait_for(browser, lambda d: "no threshold" in d.find_element(By.ID, "health").text, "health line")
    threshold = browser.find_element(By.ID, "threshold")
    threshold.clear()
    threshold.send_keys("2")                         # every cosine distance is within 2: all results match
    browser.find_element(By.ID, "query-file").send_keys(str(images[3]))
    browser.find_element(By.ID, "search-button").click()
    figures = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results figure.within"), "results")
    assert len(figures) == 10 and all(f.find_element(By.CLASS_NAME, "badge").text == "match" for f in figures)
    assert figures[0].find_element(By.CSS_SELECTOR, ".bar .fill").get_attribute("style") == "width: 0%;"
    assert "10 of 10 results within" in browser.find_element(By.ID, "verdict").text
    threshold.clear()
    threshold.send_keys("0")                         # nothing but an exact copy passes
    other = write_images(tmp_path / "elsewhere", 1, seed=99)[0]
    browser.find_element(By.ID, "query-file").send_keys(str(other))
    browser.find_element(By.ID, "search-button").click()
    verdict = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#verdict.unknown"), "unknown verdict")
    assert "no match in the gallery" in verdict.text
    beyond = browser.find_elements(By.CSS_SELECTOR, "#results figure.beyond")
    assert len(beyond) == 10 and beyond[0].find_element(By.CLASS_NAME, "badge").text == "beyond threshold"
    assert "threshold 0.0000 (explicit)" in browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(tmp_path / "unknown.png"))
    assert_not_blank(tmp_path / "unknown.png")
