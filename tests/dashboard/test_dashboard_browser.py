"""The served dashboard in a real headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, FloatRect, Locator, Page, expect, sync_playwright

from helpers.dashboard import CHELSEA, api_classify, streamlit_dashboard
from helpers.few_classes import fitted_checkpoint
from helpers.photos import jpeg
from helpers.processes import LiveServer, live_server

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


# -- a model of its own, with a few classes ------------------------------------------------------

CLASSES = ["cat", "coffee", "rocket"]
# Which photo each class folder of the evaluation holds, and what the fitted model answers for each:
# astronaut is taken for a cat, so "rocket" scores 50% and the rest 100%.
DATA = {"cat": ["chelsea"], "coffee": ["coffee"], "rocket": ["rocket", "astronaut"]}
ANSWERS = {"chelsea": "cat", "coffee": "coffee", "rocket": "rocket", "astronaut": "cat"}


@pytest.fixture(scope="module")
def few_classes_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard over an API serving "pets", a fine-tuned 3-class ResNet-50, evaluated on 4 photos."""
    work = tmp_path_factory.mktemp("few-classes")
    labels = work / "labels.txt"
    labels.write_text("\n".join(CLASSES) + "\n")
    checkpoint = fitted_checkpoint(work / "pets.pth", CLASSES, ANSWERS)
    for label, names in DATA.items():
        (work / "data" / label).mkdir(parents=True)
        for name in names:
            (work / "data" / label / f"{name}.jpg").write_bytes(jpeg(name))
    store = work / "store"
    for command in (["publish", "--weights", str(checkpoint), "--labels", str(labels)],
                    ["evaluate", "--data", str(work / "data")]):
        done = subprocess.run([sys.executable, "-m", "classifier", *command, "--store", str(store), "--name", "pets"],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
    with live_server(store, work, env={"MODEL_NAME": "pets"}) as api, \
            streamlit_dashboard(api.url, work / "streamlit.log") as url:
        yield url


def boxes(chart: Locator, selector: str) -> list[tuple[str, FloatRect]]:
    """The text and on-page box of each SVG element ``selector`` matches in a Vega chart."""
    found = chart.locator(selector)
    result = []
    for i in range(found.count()):
        box = found.nth(i).bounding_box()
        assert box is not None
        result.append(((found.nth(i).text_content() or "").strip(), box))
    return result


def apart(a: FloatRect, b: FloatRect) -> bool:
    """Two boxes that do not overlap."""
    return (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
            or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def test_the_models_tab_draws_a_few_classes_readably(few_classes_dashboard: str, page: Page,
                                                     output_dir: Path) -> None:
    # GIVEN the dashboard over a 3-class model of its own name
    page.goto(few_classes_dashboard, timeout=UI_TIMEOUT_MS)
    # THEN the page is titled after the served model, not after ResNet-50
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text("pets image classifier", timeout=UI_TIMEOUT_MS)
    expect(page).to_have_title("pets image classifier", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("pets (a ResNet-50 with 3 labels) answers")).to_be_visible()

    # WHEN the Models tab opens
    page.get_by_role("tab", name="Models").click()
    per_class = page.locator(".st-key-per-class-chart")
    confusion = page.locator(".st-key-confusion-chart")
    for chart in (per_class, confusion):
        expect(chart.locator("svg.marks g.mark-rect.role-mark path").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    page.screenshot(path=str(output_dir / "dashboard-models-few-classes.png"), full_page=True)

    # THEN "Top-1 accuracy by class" has a bar per class, each a readable band, as long as its score,
    # and its three labels stand apart
    bars = [box for _, box in boxes(per_class, "g.mark-rect.role-mark path")]
    assert len(bars) == 3 and all(bar["height"] >= 12 for bar in bars), bars
    widths = sorted(bar["width"] for bar in bars)
    assert widths[0] > 0 and abs(widths[0] / widths[2] - 0.5) < 0.05 and widths[1] == widths[2], widths
    labels = [(text, box) for text, box in boxes(per_class, "g.role-axis-label text") if text in CLASSES]
    assert sorted(text for text, _ in labels) == CLASSES
    assert all(apart(a, b) for i, (_, a) in enumerate(labels) for _, b in labels[i + 1:]), labels
    values = sorted(text for text, _ in boxes(per_class, "g.mark-text.role-mark text"))
    assert values == ["100%", "100%", "50%"]

    # AND the confusion heatmap is a whole 3 x 3 grid of square cells, a row and a column label per
    # class, and a legend that counts images in whole numbers
    cells = [box for _, box in boxes(confusion, "g.mark-rect.role-mark path")]
    assert len(cells) == 9 and all(cell["width"] >= 24 and abs(cell["width"] - cell["height"]) <= 1 for cell in cells)
    assert len({round(cell["y"]) for cell in cells}) == 3 and len({round(cell["x"]) for cell in cells}) == 3
    axis = [(text, box) for text, box in boxes(confusion, "g.role-axis-label text")]
    assert sorted(text for text, _ in axis) == sorted(CLASSES * 2)
    assert all(apart(a, b) for i, (_, a) in enumerate(axis) for _, b in axis[i + 1:]), axis
    counts = [text for text, _ in boxes(confusion, "g.mark-text.role-mark text")]
    assert sorted(counts) == ["0"] * 5 + ["1"] * 4  # cat 1, coffee 1, rocket: 1 right, 1 taken for a cat
    legend = [text for text, _ in boxes(confusion, "g.role-legend-label text")]
    assert legend and all(re.fullmatch(r"\d+", text) for text in legend), legend
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_rollout_view_in_the_browser(rollout_server: LiveServer, rollout_dashboard: str, page: Page,
                                     output_dir: Path) -> None:
    # GIVEN a running shadow rollout, as the API describes it
    rollout = httpx.get(f"{rollout_server.url}/model", timeout=30).json()["rollout"]
    page.goto(rollout_dashboard, timeout=UI_TIMEOUT_MS)
    # WHEN the Rollout tab is opened
    page.get_by_role("tab", name="Rollout").click(timeout=UI_TIMEOUT_MS)
    # THEN it shows the candidate, both versions' figures, the agreement and the verdict
    expect(page.locator(".st-key-rollout-header")).to_contain_text(rollout["candidate"], timeout=UI_TIMEOUT_MS)
    expect(page.locator(".st-key-rollout-verdict")).to_contain_text("Verdict: ready", timeout=UI_TIMEOUT_MS)
    expect(page.locator(".st-key-rollout-agreement")).to_contain_text("100.0%", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("tabpanel", name="Rollout").get_by_test_id("stDataFrame")).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    page.screenshot(path=str(output_dir / "dashboard-rollout.png"))
