"""The page in a real browser (headless Chromium driven by selenium): it loads with no console error,
a submitted sentence shows the tokens, the model's predictions and the attention views; the HTML file of
`bertforge attention` works opened from disk. Screenshots are saved in the test's tmp directory.

Skipped only where Chromium is absent and this is not CI (CI=true must run it).
"""

from __future__ import annotations

import os
import shutil

import pytest

import importlib.util

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
SELENIUM = importlib.util.find_spec("selenium") is not None
if not (CHROMIUM and DRIVER and SELENIUM) and os.environ.get("CI") != "true":
    pytest.skip("needs chromium, chromium-driver (apt-get install chromium chromium-driver) and selenium",
                allow_module_level=True)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert CHROMIUM and DRIVER, "CI must have chromium and chromium-driver (apt-get install chromium chromium-driver)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager must not look for a browser online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1800",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def run_page(driver, url: str, text_a: str, text_b: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "run").is_enabled())
    assert console_errors(driver) == []
    for box, text in (("text-a", text_a), ("text-b", text_b)):
        field = driver.find_element(By.ID, box)
        field.clear()
        field.send_keys(text)
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")


def attention_drawn(driver, layers: int, heads: int) -> None:
    from selenium.webdriver.common.by import By

    assert len(driver.find_elements(By.CSS_SELECTOR, ".bfa-head-svg line")) > 0  # the head view's lines
    assert len(driver.find_elements(By.CSS_SELECTOR, ".bfa-model-view canvas")) == layers * heads
    cell = driver.find_elements(By.CSS_SELECTOR, ".bfa-cell")[-1]  # the model view selects the head view's head
    cell.click()
    assert driver.find_element(By.ID, "bfa-layer").get_attribute("value") == str(layers - 1)
    assert driver.find_element(By.ID, "bfa-head").get_attribute("value") == str(heads - 1)
    assert len(driver.find_elements(By.CSS_SELECTOR, ".bfa-head-svg line")) > 0


def test_page_with_a_classifier(browser, serve_models, start_server, tmp_path):
    from selenium.webdriver.common.by import By

    server = start_server(["--model", serve_models["clf"]])
    run_page(browser, server.url + "/", "a good movie", "the plot was bad")
    assert browser.find_element(By.ID, "model-task").text == "classify"
    import httpx
    import numpy as np

    pair = ["a good movie", "the plot was bad"]  # what the page shows is what the API answers for the pair
    expected = httpx.post(server.url + "/classify", json={"inputs": [pair]}, timeout=60).json()[0]["label"]
    assert browser.find_element(By.ID, "predicted-label").text == expected
    tokens = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#tokens .token")]
    assert tokens == ["[CLS]", "a", "good", "movie", "[SEP]", "the", "plot", "was", "bad", "[SEP]"]
    # the two sentences' similarity: the dot product of their unit vectors, recomputed here with numpy
    a, b = np.array(httpx.post(server.url + "/embed", json={"inputs": pair, "normalize": True}, timeout=60).json())
    assert float(browser.find_element(By.ID, "cosine").text) == pytest.approx(float(a @ b), abs=1.1e-3)
    attention_drawn(browser, 2, 2)
    assert console_errors(browser) == []
    browser.save_screenshot(str(tmp_path / "page-classify.png"))
    assert (tmp_path / "page-classify.png").stat().st_size > 10_000


def test_page_with_fill_mask(browser, serve_models, start_server, tmp_path):
    from selenium.webdriver.common.by import By

    server = start_server(["--model", serve_models["mlm"]])
    run_page(browser, server.url + "/", "the cat [MASK] the dog .", "a bird sings")
    assert browser.find_element(By.ID, "model-task").text == "fill-mask"
    guesses = browser.find_elements(By.CSS_SELECTOR, "#fillmask .bar-row")
    assert len(guesses) == 5 and all(g.text for g in guesses)
    assert not browser.find_element(By.ID, "fillmask-card").get_attribute("hidden")
    attention_drawn(browser, 2, 2)
    assert console_errors(browser) == []
    browser.save_screenshot(str(tmp_path / "page-fill-mask.png"))


@pytest.mark.parametrize("name, text_a, text_b, route", [
    ("elmo-choice", "alice lives in paris .", "she likes it .\nthe river runs .", "choice"),  # no BERT encoder
    ("xlnet-classify", "a good movie", "the plot was bad", "classify"),
])
def test_page_with_another_family(browser, serve_models, start_server, tmp_path, name, text_a, text_b, route):
    """A model without a BERT encoder: the page shows its family and prediction, and asks for no attention."""
    import httpx
    from selenium.webdriver.common.by import By

    server = start_server(["--model", serve_models[name]])
    run_page(browser, server.url + "/", text_a, text_b)
    body = ({"inputs": {"context": text_a, "endings": text_b.split("\n")}} if route == "choice"
            else {"inputs": {"text": text_a, "text_pair": text_b}})
    answer = httpx.post(f"{server.url}/{route}", json=body, timeout=60).json()
    assert browser.find_element(By.ID, "predicted-label").text == answer["ending" if route == "choice" else "label"]
    assert name.split("-")[0] in browser.find_element(By.ID, "model-line").text
    assert browser.find_element(By.ID, "attention-card").get_attribute("hidden")
    assert console_errors(browser) == []
    browser.save_screenshot(str(tmp_path / f"page-{name}.png"))


def test_attention_html_works_from_disk(browser, serve_models, tmp_path):
    from selenium.webdriver.common.by import By

    from bertforge.cli import main

    out = tmp_path / "attention.html"
    main(["attention", "--model", str(serve_models["mlm"]), "the cat sees the dog", "--pair", "a bird sings",
          "--out", str(out)])
    browser.get(out.as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text == "Attention"
    attention_drawn(browser, 2, 2)
    assert console_errors(browser) == []
    browser.save_screenshot(str(tmp_path / "attention-html.png"))
