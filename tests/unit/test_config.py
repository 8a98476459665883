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


@pytest.mark.parametrize(
    ("env", "models", "default"),
    [
        ({}, (), "resnet50"),
        ({"MODEL_NAME": "defects"}, (), "defects"),
        ({"MODELS": "defects, products,defects"}, ("defects", "products"), "defects"),  # the first is the default
        ({"MODELS": "defects,products", "MODEL_NAME": "products"}, ("defects", "products"), "products"),
        ({"MODELS": "*"}, ("*",), "resnet50"),
        ({"MODELS": "*", "MODEL_NAME": "defects"}, ("*",), "defects"),
    ],
)
def test_models_and_the_default_model(env: dict[str, str], models: tuple[str, ...], default: str) -> None:
    settings = Settings.from_env(env)
    assert (settings.models, settings.model_name) == (models, default)
    assert settings.every_model is (models == ("*",))
    assert settings.served_models == (() if models == ("*",) else models or (default,))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MODELS": "defects,products", "MODEL_NAME": "resnet50"}, "MODEL_NAME"),  # POST /classify's, not served
        ({"MODELS": "*,defects"}, "MODELS"),
        ({"MODELS": "Defects"}, "MODELS"),
        ({"MODEL_NAME": "../x"}, "MODEL_NAME"),
        ({"MODEL_MEMORY_MB": "lots"}, "MODEL_MEMORY_MB"),
        ({"MODEL_MEMORY_MB": "-1"}, "MODEL_MEMORY_MB"),
    ],
)
def test_bad_models_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "memory_mb"),
    [
        ({}, None),  # outside Lambda: no bound
        ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008"}, 1504),  # a share of the function's memory
        ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008", "MODEL_MEMORY_MB": "2000"}, 2000),
        ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008", "MODEL_MEMORY_MB": "0"}, None),  # 0: no bound
    ],
)
def test_model_memory_defaults_to_a_share_of_the_lambdas(env: dict[str, str], memory_mb: int | None) -> None:
    assert Settings.from_env(env).model_memory_mb == memory_mb
