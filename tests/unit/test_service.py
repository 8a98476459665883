"""The classify use case's cost bound (classifier.serving.service): a pixel budget per request, summed over
its batch, checked from the image headers before anything is decoded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from classifier.api.app import create_app
from classifier.config import ConfigError, Settings

from helpers.photos import encode, photo
from helpers.stores import copy_store, stored_records

BUDGET = 1_000_000
SIDE = (800, 600)  # 480,000 pixels: two fit the budget, three do not


@pytest.fixture(scope="module")
def budget_client(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    store = copy_store(published_store, tmp_path_factory.mktemp("budget") / "store")
    settings = Settings(model_store=store, max_image_pixels=BUDGET, max_request_pixels=BUDGET)
    with TestClient(create_app(settings)) as client:
        yield client, store


def images() -> tuple[bytes, bytes]:
    """A whole 800x600 photo, and the same cut short: its header intact, its pixels not decodable."""
    whole = encode(photo("chelsea").resize(SIDE, Image.Resampling.BICUBIC), "PNG")
    return whole, whole[: len(whole) // 2]


def post(client: TestClient, *parts: bytes) -> tuple[int, dict[str, object]]:
    files = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(parts)]
    response = client.post("/classify", files=files)
    return response.status_code, response.json()


def test_a_batch_over_the_pixel_budget_is_413_before_any_decoding(budget_client: tuple[TestClient, Path]) -> None:
    client, store = budget_client
    whole, truncated = images()
    before = len(stored_records(store))
    # GIVEN a batch whose second image would fail to decode (422), and whose three headers hold 1.44 MP
    status, body = post(client, whole, truncated, whole)
    # THEN it is refused for its size, not for the broken image: nothing was decoded, nothing stored
    assert status == 413
    assert body["error"] == {"code": "image_too_large", "message": (
        f"the 3 images hold 1440000 pixels between them; the limit per request is {BUDGET} (MAX_REQUEST_PIXELS): "
        "send them in smaller batches")}
    assert len(stored_records(store)) == before


def test_a_batch_within_the_budget_is_decoded_and_classified(budget_client: tuple[TestClient, Path]) -> None:
    client, _ = budget_client
    whole, truncated = images()
    # The same broken image in a batch of two (960,000 pixels) is decoded, and refused for what it is
    status, body = post(client, whole, truncated)
    assert (status, body["error"]["code"]) == (422, "invalid_image")  # type: ignore[index]
    status, body = post(client, whole, whole)
    assert status == 200 and len(body["results"]) == 2  # type: ignore[arg-type]


def test_the_budget_holds_at_least_one_image() -> None:
    with pytest.raises(ConfigError, match="MAX_REQUEST_PIXELS"):
        Settings.from_env({"MAX_IMAGE_PIXELS": "50000000", "MAX_REQUEST_PIXELS": "40000000"})
    assert Settings.from_env({}).max_request_pixels == 120_000_000
