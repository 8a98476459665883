"""What ``make load``'s simulated users do (Locust; ``bench/load.py`` runs it headless).

Each user, with no pause between requests (a closed loop: the server's
capacity, not a think time, sets the rate):

- ``POST /classify`` with one of the photos in ``$LOAD_PHOTOS`` (8 in 11);
- ``GET /classifications?limit=20``, a page of records (2 in 11);
- a bad input (1 in 11), in turn: bytes that are no image (415), a truncated
  JPEG (422), ``top_k=99`` (422). Each must get its own 4xx and error code;
  anything else counts as a failure, as does any non-200 answer to the others.
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

from locust import FastHttpUser, constant, task

PHOTOS = [p.read_bytes() for p in sorted(Path(os.environ["LOAD_PHOTOS"]).glob("*.jpg"))]
if not PHOTOS:
    raise SystemExit(f"no *.jpg in LOAD_PHOTOS={os.environ['LOAD_PHOTOS']}")
# (name, body, query, expected status, expected error code)
BAD_INPUTS = [
    ("bad: not an image", b"this is not an image, just text" * 8, "", 415, "unsupported_media_type"),
    ("bad: truncated JPEG", PHOTOS[0][: len(PHOTOS[0]) // 3], "", 422, "invalid_image"),
    ("bad: top_k=99", PHOTOS[0], "?top_k=99", 422, "invalid_parameter"),
]


class ApiUser(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.bad = itertools.cycle(BAD_INPUTS)

    @task(8)
    def classify(self) -> None:
        with self.client.post("/classify", data=random.choice(PHOTOS), headers={"content-type": "image/jpeg"},
                              name="POST /classify", catch_response=True) as response:
            if response.status_code != 200 or "predictions" not in (response.json() or {}):
                response.failure(f"status {response.status_code}")

    @task(2)
    def list_records(self) -> None:
        with self.client.get("/classifications?limit=20", name="GET /classifications",
                             catch_response=True) as response:
            if response.status_code != 200 or "items" not in (response.json() or {}):
                response.failure(f"status {response.status_code}")

    @task(1)
    def bad_input(self) -> None:
        name, body, query, status, code = next(self.bad)
        with self.client.post(f"/classify{query}", data=body, headers={"content-type": "image/jpeg"}, name=name,
                              catch_response=True) as response:
            error = (response.json() or {}).get("error", {}) if response.text else {}
            if response.status_code == status and error.get("code") == code:
                response.success()
            else:
                response.failure(f"expected {status} {code}, got {response.status_code} {error.get('code')}")
