"""The served dashboard in a real headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from helpers.dashboard import CHELSEA, api_classify
from helpers.processes import LiveServer

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright's own browser download is not used
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Streamlit's first render, a websocket round trip and an inference on a busy CI machine.
UI_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_uploaded_photo_shows_its_top_label(server: LiveServer, dashboard: str, page: Page,
                                            output_dir: Path) -> None:
    # GIVEN the served dashboard, and the API's own top label for a real photo
    expected = api_classify(server, CHELSEA.read_bytes())["predictions"][0]["label"]
    page.goto(dashboard, timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("heading", name="ResNet-50 image classifier")).to_be_visible(timeout=UI_TIMEOUT_MS)
    # and the uploader states the limit of this API, which has no uploads bucket: 4 MiB, not 20
    dropzone = page.get_by_test_id("stFileUploaderDropzoneInstructions")
    expect(dropzone).to_contain_text("4MB per file", timeout=UI_TIMEOUT_MS)
    expect(dropzone).not_to_contain_text("20MB")
    expect(page.locator(".st-key-upload-limit")).to_contain_text("no uploads bucket", timeout=UI_TIMEOUT_MS)

    # WHEN the photo is chosen in the file uploader
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(CHELSEA)

    # THEN its card shows that label, with the photo, a chart and the latency
    card = page.locator(".st-key-result-0")
    expect(card.locator(".st-key-top-label-0")).to_have_text(expected, timeout=UI_TIMEOUT_MS)
    expect(card.get_by_text(re.compile(r"\d+ ms total"))).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(card.get_by_test_id("stVegaLiteChart")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(card.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg")
           .first).to_be_visible(timeout=UI_TIMEOUT_MS)
    photo = card.get_by_role("img").first
    expect(photo).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=photo.element_handle(),
                           timeout=UI_TIMEOUT_MS)
    # and the untrained model is called out; nothing failed
    expect(page.get_by_text("Untrained model")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)

    # The run is over (no "Running..." indicator) before the picture is taken.
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    # The toolbar has rendered (its main menu), without Streamlit's "Deploy" button: it deploys to
    # Streamlit's cloud, not this project.
    expect(page.get_by_test_id("stMainMenu")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("stAppDeployButton")).to_have_count(0)
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    page.screenshot(path=str(output_dir / "dashboard.png"))
    assert (output_dir / "dashboard.png").stat().st_size > 10_000


def test_the_model_picker_chooses_the_model_that_classifies(two_models_server: LiveServer,
                                                            two_models_dashboard: str, page: Page) -> None:
    # GIVEN the dashboard of an API serving resnet50 (the default) and products
    page.goto(two_models_dashboard, timeout=UI_TIMEOUT_MS)
    picker = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")
    expect(picker).to_have_value("resnet50 (1000 labels, default)", timeout=UI_TIMEOUT_MS)

    # WHEN products is picked, then a photo uploaded
    picker.click()
    page.get_by_role("option", name="products (1000 labels)").click()
    expect(picker).to_have_value("products (1000 labels)", timeout=UI_TIMEOUT_MS)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(CHELSEA)

    # THEN the card shows products' own label for the photo, the one the API gives
    expected = httpx.post(f"{two_models_server.url}/models/products/classify", content=CHELSEA.read_bytes(),
                          headers={"content-type": "image/jpeg"}, timeout=120).json()["predictions"][0]["label"]
    assert expected.startswith("products ")
    card = page.locator(".st-key-result-0")
    expect(card.locator(".st-key-top-label-0")).to_have_text(expected, timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("stException")).to_have_count(0)
