"""The web demo as a visitor meets it: ``selfdetr app`` serving a tiny random model (and a
second one to compare) on a free loopback port, driven by Debian's Chromium through
Selenium. Skips only where no Chromium (with its driver) is installed."""

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import FEATURE_FPS, save_tiny_model, write_feature_file

from selfdetr_hf.app.detection import detection_processor
from selfdetr_hf.inference import detect
from selfdetr_hf.model_loading import load_model, load_processor

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
START_TIMEOUT = 120  # seconds for the server to import torch and Gradio and load the models
PAGE_TIMEOUT = 60
DEFAULT_TOP_K = 20  # the page's top-k before anyone moves the slider


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "no Chromium browser with its driver is installed (apt-get install chromium chromium-driver; "
            ".ci/run installs them): the browser test cannot run here"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("app-models")
    return save_tiny_model(folder / "with-feedback"), save_tiny_model(
        folder / "baseline", encoder_feedback=False, decoder_feedback=False
    )


@pytest.fixture(scope="module")
def app_url(models, browser, tmp_path_factory):
    """``selfdetr app --model ... --compare-model ... --port FREE`` until the module's tests end."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app-server") / "server.log"
    command = [sys.executable, "-m", "selfdetr_hf.cli", "app", "--model", str(models[0]),
               "--compare-model", str(models[1]), "--port", str(port), "--threads", "1"]  # fmt: skip
    with open(log, "w") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"selfdetr app did not start: {log.read_text()}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def _upload_and_detect(browser, url: str, path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, PAGE_TIMEOUT)
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#feature-files input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#feature-files input[type=file]").send_keys(str(path))
    wait.until(lambda page: path.stem in page.find_element(By.CSS_SELECTOR, "#feature-files").text)  # uploaded
    fps = browser.find_element(By.CSS_SELECTOR, "#feature-fps input")
    fps.clear()
    fps.send_keys(str(FEATURE_FPS))
    browser.find_element(By.CSS_SELECTOR, "#detect-files").click()
    wait.until(lambda page: re.match(r"\d+ detections in|error:", page.find_element(By.CSS_SELECTOR, "#status").text))


def test_an_uploaded_feature_file_gives_its_detections_in_timeline_table_and_download(
    browser, app_url, models, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    path = write_feature_file(tmp_path / "clip.npy")
    processor = load_processor(models[0])
    settings = detection_processor(processor, threshold=processor.min_score, top_k=DEFAULT_TOP_K, nms_method="nms")
    expected = len(
        detect(load_model(models[0]), settings, {"clip": np.load(path)}, feature_fps=FEATURE_FPS)["clip"]["scores"]
    )

    _upload_and_detect(browser, app_url, path)
    assert browser.find_element(By.CSS_SELECTOR, "#status").text.startswith(f"{expected} detections in 1 video(s)")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline svg rect.detection")) == expected
    grid = browser.find_element(By.CSS_SELECTOR, "#detections-table [role=grid]")
    assert int(grid.get_attribute("aria-rowcount")) == expected + 1  # the header row, then one per detection
    link = browser.find_element(By.CSS_SELECTOR, "#download a")
    assert link.get_attribute("href").endswith("detections.json")
    browser.save_screenshot(str(tmp_path / "detections.png"))

    browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Attention maps')]").click()
    browser.find_element(By.CSS_SELECTOR, "#show-attention").click()
    WebDriverWait(browser, PAGE_TIMEOUT).until(
        lambda page: "window 1 of 3" in page.find_element(By.CSS_SELECTOR, "#attention-status").text
    )
    WebDriverWait(browser, PAGE_TIMEOUT).until(
        lambda page: len(page.find_elements(By.CSS_SELECTOR, "#attention-tab img")) == 3  # two models' maps, diversity
    )
    browser.save_screenshot(str(tmp_path / "attention.png"))
    assert (tmp_path / "detections.png").stat().st_size > 0 and (tmp_path / "attention.png").stat().st_size > 0


def test_a_corrupt_upload_is_one_readable_line_in_the_page(browser, app_url, tmp_path):
    from selenium.webdriver.common.by import By

    path = tmp_path / "broken.npy"
    path.write_bytes(b"\x93NUMPY truncated")
    _upload_and_detect(browser, app_url, path)
    status = browser.find_element(By.CSS_SELECTOR, "#status").text
    assert status.startswith("error: video 'broken': broken.npy: unreadable or truncated feature file")
    assert "Traceback" not in browser.page_source
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline svg rect.detection") == []
