"""Runtime settings, read once from the environment and validated.

The defaults written in ``Settings`` below are the only copy of each: the CLI,
the client and the dashboard read them from here. A wrong value fails at start-up
with a message that names the variable, rather than surfacing later as a confusing
request error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

MiB = 1024 * 1024

BACKENDS = ("onnx", "torch")

# MODELS=* serves every model of the store.
EVERY_MODEL = "*"
# A model name, as the store allows it (classifier.store.manifest.NAME_RE; a unit test keeps the two equal).
MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Without MODEL_MEMORY_MB, the loaded models may take this share of a Lambda's memory
# (AWS_LAMBDA_FUNCTION_MEMORY_SIZE); the rest is the runtime's, the images of the requests in
# flight, and the second copy of a model while a new version of it loads.
MODEL_MEMORY_SHARE = 0.5


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


def _models(env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """``MODELS`` and ``MODEL_NAME`` read together: the served names (``()``: the default model alone,
    ``("*",)``: every model of the store) and the default model, which ``POST /classify`` serves."""
    raw = env.get("MODELS") or ""
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    default = env.get("MODEL_NAME") or ""
    if EVERY_MODEL in names:
        if len(names) > 1:
            raise ConfigError(f"MODELS is either {EVERY_MODEL} (every model of the store) or a list of names, "
                              f"got {raw!r}")
        return names, default or Settings.model_name
    for name in (*names, default):
        if name and not MODEL_NAME_RE.fullmatch(name):
            variable = "MODEL_NAME" if name == default else "MODELS"
            raise ConfigError(f"{variable}: {name!r} is not a model name (1-64 lowercase letters, digits, "
                              "'-' or '_')")
    if not names:
        return (), default or Settings.model_name
    if not default:
        return names, names[0]
    if default not in names:
        raise ConfigError(f"MODEL_NAME ({default}) must be one of MODELS ({', '.join(names)}): "
                          "POST /classify serves it")
    return names, default


def _model_memory_mb(env: Mapping[str, str]) -> int | None:
    """``MODEL_MEMORY_MB`` (0: no bound); unset, a share of the Lambda's memory, or no bound outside Lambda."""
    if env.get("MODEL_MEMORY_MB"):
        return _int(env, "MODEL_MEMORY_MB", 0, 0, 1 << 20) or None
    lambda_memory = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if lambda_memory.isdigit():
        return max(1, int(int(lambda_memory) * MODEL_MEMORY_SHARE))
    return None


@dataclass(frozen=True)
class Settings:
    model_store: Path = Path(".model-store")
    model_name: str = "resnet50"
    # The models this process serves (MODELS): names, or ("*",) for every model of the store;
    # empty: model_name alone.
    models: tuple[str, ...] = ()
    # The memory the loaded models may take together, in MiB (MODEL_MEMORY_MB); None: no bound.
    model_memory_mb: int | None = None
    backend: str = "onnx"
    refresh_seconds: float = 30.0
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
    # DynamoDB's key design (classifier.records.keys): index partition keys split in this many
    # shards, and the indexes ("families") the table has. Both are the table's, set by the CDK app.
    records_shards: int = 16
    records_indexes: tuple[str, ...] = ("time", "owner")
    # How long a record write retries while DynamoDB throttles, before the record is deferred.
    records_retry_seconds: float = 1.0
    # Where records that could not be written wait for ``records replay``: s3://bucket/prefix, or a
    # directory (default: records-deferred/ beside the SQLite file, or in the model store).
    records_deferred: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables; an unset or empty variable keeps the default above."""
        env = os.environ if env is None else env
        backend = env.get("BACKEND", cls.backend).strip().lower() or cls.backend
        if backend not in BACKENDS:
            raise ConfigError(f"BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
        threads = _int(env, "INFERENCE_THREADS", 0, 0, 256)
        models, model_name = _models(env)
        return cls(
            model_store=Path(env.get("MODEL_STORE") or cls.model_store),
            model_name=model_name,
            models=models,
            model_memory_mb=_model_memory_mb(env),
            backend=backend,
            refresh_seconds=_float(env, "MODEL_REFRESH_SECONDS", cls.refresh_seconds, 0.0, 86400.0),
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
            records_shards=_int(env, "RECORDS_SHARDS", cls.records_shards, 1, 64),
            records_indexes=tuple(n.strip() for n in env["RECORDS_INDEXES"].split(",") if n.strip())
            if env.get("RECORDS_INDEXES") else cls.records_indexes,
            records_retry_seconds=_float(env, "RECORDS_RETRY_SECONDS", cls.records_retry_seconds, 0.0, 600.0),
            records_deferred=env.get("RECORDS_DEFERRED") or None,
        )

    @property
    def every_model(self) -> bool:
        """``MODELS=*``: every model of the store is served."""
        return self.models == (EVERY_MODEL,)

    @property
    def served_models(self) -> tuple[str, ...]:
        """The names MODELS lists (the default model alone when it lists none); empty for ``*``."""
        if self.every_model:
            return ()
        return self.models or (self.model_name,)


def default_store() -> Path:
    """The store a command uses without ``--store``: ``$MODEL_STORE``, else the default above."""
    return Path(os.environ.get("MODEL_STORE") or Settings.model_store)


def default_model_name() -> str:
    """The model a command uses without ``--name``: ``$MODEL_NAME``, else the default above."""
    return os.environ.get("MODEL_NAME") or Settings.model_name
