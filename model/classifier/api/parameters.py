"""The API's query parameters: one table of names, bounds and defaults.

The routes read parameters through it, and tests/unit/test_openapi.py checks that the
hand-kept ``openapi.json`` documents exactly these bounds and defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from classifier.errors import InvalidParameter


@dataclass(frozen=True)
class IntParameter:
    """An optional integer query parameter in [minimum, maximum]."""

    name: str
    default: int
    minimum: int
    maximum: int

    def read(self, query: Mapping[str, str]) -> int:
        """The value in ``query``, or the default; anything else is a 422 ``invalid_parameter``."""
        raw = query.get(self.name)
        if raw is None:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not self.minimum <= value <= self.maximum:
            raise InvalidParameter(f"{self.name} must be an integer from {self.minimum} to {self.maximum}, "
                                   f"got {raw!r}")
        return value


@dataclass(frozen=True)
class TextParameter:
    """An optional text query parameter of at most ``max_length`` characters matching ``pattern``."""

    name: str
    max_length: int
    pattern: str | None = None
    example: str = ""

    def read(self, query: Mapping[str, str]) -> str | None:
        raw = query.get(self.name)
        if raw is None:
            return None
        if not raw or len(raw) > self.max_length or (self.pattern and not re.fullmatch(self.pattern, raw)):
            hint = f" such as {self.example}" if self.example else f" of 1 to {self.max_length} characters"
            raise InvalidParameter(f"{self.name} must be a value{hint}, got {raw[:100]!r}")
        return raw


TOP_K = IntParameter("top_k", default=5, minimum=1, maximum=20)
LIMIT = IntParameter("limit", default=20, minimum=1, maximum=100)
LABEL = TextParameter("label", max_length=256)
MODEL_VERSION = TextParameter("model_version", max_length=29, pattern=r"\d{8}T\d{6}Z-[0-9a-f]{12}",
                              example="20261122T095500Z-e9c879a52177")
# ISO 8601 UTC instants, read by classifier.records.parse_timestamp.
SINCE = TextParameter("since", max_length=40, example="2026-11-22T10:00:00Z")
UNTIL = TextParameter("until", max_length=40, example="2026-11-23T00:00:00Z")

# Every checked query parameter (cursor aside: the record store checks its own), by the path and
# method that take it.
QUERY_PARAMETERS: dict[tuple[str, str], tuple[IntParameter | TextParameter, ...]] = {
    ("/classify", "post"): (TOP_K,),
    ("/classifications", "get"): (LIMIT, LABEL, MODEL_VERSION, SINCE, UNTIL),
    ("/all/classifications", "get"): (LIMIT, LABEL, MODEL_VERSION, SINCE, UNTIL),
}
