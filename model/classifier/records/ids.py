"""Record ids (they sort by creation time) and the UTC timestamps that bound a listing."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from classifier.errors import InvalidParameter

RECORD_ID_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T\d{12}Z-[0-9a-f]{12}$")
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]00:00)$")


def record_id(at: datetime, suffix: str) -> str:
    """``<yyyymmddThhmmss><microseconds>Z-<12 hex>``: ids sort by time; ``suffix`` makes them unique."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{suffix[:12]}"


def new_record_id(now: datetime | None = None) -> str:
    """A new, unique, time-ordered record id."""
    return record_id(now or datetime.now(UTC), secrets.token_hex(6))


def is_record_id(value: str) -> bool:
    return RECORD_ID_RE.fullmatch(value) is not None


def parse_timestamp(name: str, value: str) -> datetime:
    """An ISO 8601 UTC instant (``Z`` or ``+00:00``); anything else is a 422 naming the parameter."""
    if not _TIMESTAMP_RE.fullmatch(value):
        raise InvalidParameter(f"{name} must be an ISO 8601 UTC time such as 2026-11-22T10:00:00Z, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise InvalidParameter(f"{name} is not a valid time: {value!r}") from None


def id_bound(at: datetime) -> str:
    """The smallest record id created at ``at``: ``since`` and ``until`` as id bounds."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z"
