"""Runtime settings, read once from the environment and validated.

The defaults written in ``Settings`` below are the only copy of each: the CLI,
the client and the dashboard read them from here. A wrong value fails at start-up
with a message that names the variable, rather than surfacing later as a confusing
request error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

MiB = 1024 * 1024

BACKENDS = ("onnx", "torch")


T = TypeVar("T", int, float)


class ConfigError(ValueError):
    pass


def _number(env: Mapping[str, str], key: str, default: T, lo: T, hi: T, kind: Callable[[str], T]) -> T:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{key} must be {noun}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{key} must be between {lo} and {hi}, got {value}")
    return value


def _int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    return _number(env, key, default, lo, hi, int)


def _float(env: Mapping[str, str], key: str, default: float, lo: float, hi: float) -> float:
    return _number(env, key, default, lo, hi, float)


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true/false (or 1/0), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    model_store: Path = Path(".model-store")
    model_name: str = "resnet50"
    backend: str = "onnx"
    refresh_seconds: float = 30.0
    # How often a serving process judges a running rollout from its evidence and acts on the
    # verdict; 0: never, and it never writes the store (Lambda, where EFS is read-only to it).
    rollout_judge_seconds: float = 30.0
    max_image_bytes: int = 4 * MiB
    # The whole request body (a multipart batch holds several images). Lambda
    # caps a synchronous invocation at 6 MB, so larger bodies never arrive there.
    max_request_bytes: int = 6 * MiB
    max_image_pixels: int = 40_000_000
    max_batch: int = 16
    max_s3_image_bytes: int = 20 * MiB
    fast_jpeg_decode: bool = True
    verify_on_load: bool = True
    threads: int | None = None
    uploads_bucket: str | None = None
    # Records: SQLite at records_db (default <model_store>/records.sqlite3), or DynamoDB.
    records_db: Path | None = None
    records_table: str | None = None
    records_ttl_days: int = 365
    records_cursor_secret: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables; an unset or empty variable keeps the default above."""
        env = os.environ if env is None else env
        backend = env.get("BACKEND", cls.backend).strip().lower() or cls.backend
        if backend not in BACKENDS:
            raise ConfigError(f"BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
        threads = _int(env, "INFERENCE_THREADS", 0, 0, 256)
        return cls(
            model_store=Path(env.get("MODEL_STORE") or cls.model_store),
            model_name=env.get("MODEL_NAME") or cls.model_name,
            backend=backend,
            refresh_seconds=_float(env, "MODEL_REFRESH_SECONDS", cls.refresh_seconds, 0.0, 86400.0),
            rollout_judge_seconds=_float(env, "ROLLOUT_JUDGE_SECONDS", cls.rollout_judge_seconds, 0.0, 86400.0),
            max_image_bytes=_int(env, "MAX_IMAGE_BYTES", cls.max_image_bytes, 1, 1024 * MiB),
            max_request_bytes=_int(env, "MAX_REQUEST_BYTES", cls.max_request_bytes, 1, 1024 * MiB),
            max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", cls.max_image_pixels, 1, 1_000_000_000),
            max_batch=_int(env, "MAX_BATCH", cls.max_batch, 1, 256),
            max_s3_image_bytes=_int(env, "MAX_S3_IMAGE_BYTES", cls.max_s3_image_bytes, 1, 5 * 1024 * MiB),
            fast_jpeg_decode=_bool(env, "FAST_JPEG_DECODE", cls.fast_jpeg_decode),
            verify_on_load=_bool(env, "VERIFY_ON_LOAD", cls.verify_on_load),
            threads=threads or None,
            uploads_bucket=env.get("UPLOADS_BUCKET") or None,
            records_db=Path(env["RECORDS_DB"]) if env.get("RECORDS_DB") else None,
            records_table=env.get("RECORDS_TABLE") or None,
            records_ttl_days=_int(env, "RECORDS_TTL_DAYS", cls.records_ttl_days, 0, 36500),
            records_cursor_secret=env.get("RECORDS_CURSOR_SECRET") or None,
        )


def default_store() -> Path:
    """The store a command uses without ``--store``: ``$MODEL_STORE``, else the default above."""
    return Path(os.environ.get("MODEL_STORE") or Settings.model_store)


def default_model_name() -> str:
    """The model a command uses without ``--name``: ``$MODEL_NAME``, else the default above."""
    return os.environ.get("MODEL_NAME") or Settings.model_name
