"""A wrong setting stops the process at start-up with a message naming the variable."""

from __future__ import annotations

import pytest

from classifier.config import ConfigError, Settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BACKEND": "tensorflow"}, "BACKEND"),
        ({"MAX_BATCH": "x"}, "MAX_BATCH"),
        ({"MAX_BATCH": "0"}, "MAX_BATCH"),
        ({"MODEL_REFRESH_SECONDS": "-1"}, "MODEL_REFRESH_SECONDS"),
        ({"FAST_JPEG_DECODE": "maybe"}, "FAST_JPEG_DECODE"),
        ({"MAX_IMAGE_BYTES": "4MB"}, "MAX_IMAGE_BYTES"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert (settings.backend, settings.refresh_seconds, settings.max_image_bytes, settings.max_image_pixels,
            settings.max_s3_image_bytes, settings.fast_jpeg_decode) == ("onnx", 30.0, 4 << 20, 40_000_000,
                                                                          20 << 20, True)
