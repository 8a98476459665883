"""The client's own rules, without a server: its retry back-off, and the CLI's usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.__main__ import main
from classifier.client.transport import (
    RetryPolicy,
)

from helpers.aws import REGION, sign_as

ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLECALLER", "caller-secret-key"


@pytest.fixture
def caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calling service's AWS identity, as botocore finds it in the environment."""
    sign_as(monkeypatch, ACCESS_KEY, SECRET_KEY, REGION)


# -- a Function URL with IAM auth, on loopback -------------------------------------------


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=10, base=0.5, cap=4.0)
    for retry in range(1, 8):
        ceiling = min(4.0, 0.5 * 2**retry)
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2 and min(delays) < ceiling / 2  # spread over the range, not fixed
    assert all(policy.delay(1, retry_after=3.0) >= 3.0 for _ in range(50))
    assert all(policy.delay(1, retry_after=60.0) <= 4.0 for _ in range(50))  # capped


def test_cli_without_url_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CLASSIFIER_URL", raising=False)
    assert main(["classify", str(tmp_path / "x.jpg")]) == 2
    assert "--url" in capsys.readouterr().err


