"""The API's parameters: one table of names, bounds and defaults.

The routes read parameters through it, and tests/unit/test_openapi.py checks that the
hand-kept ``openapi.json`` documents exactly these bounds and defaults, and that a value
the document allows is one the server takes (and the other way round).
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
        # ASCII digits only, as the document's "integer" means: int() would also take " 5", "+5",
        # "1_0" and other scripts' digits (and a huge number of digits is out of range anyway).
        digits = re.fullmatch(r"0*([0-9]{1,9})", raw)
        value = int(digits[1]) if digits else None
        if value is None or not self.minimum <= value <= self.maximum:
            raise InvalidParameter(f"{self.name} must be an integer from {self.minimum} to {self.maximum}, "
                                   f"got {raw!r}")
        return value


@dataclass(frozen=True)
class TextParameter:
    """An optional text parameter of 1 to ``max_length`` characters matching ``pattern``."""

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
# Opaque: the record store checks that it signed it. Its bound is above the longest cursor the
# store can sign (a 256-character label, escaped, twice).
CURSOR = TextParameter("cursor", max_length=16384)
LABEL = TextParameter("label", max_length=256)
MODEL_VERSION = TextParameter("model_version", max_length=29, pattern=r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}",
                              example="20261122T095500Z-e9c879a52177")
# RFC 3339 UTC instants ("Z", "+00:00" or "-00:00"), then read by classifier.records.parse_timestamp.
# Patterns say [0-9], not \d: Python's \d takes any script's digits, the document's (ECMA-262) ASCII only.
_UTC_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-]00:00)"
SINCE = TextParameter("since", max_length=40, pattern=_UTC_TIME, example="2026-11-22T10:00:00Z")
UNTIL = TextParameter("until", max_length=40, pattern=_UTC_TIME, example="2026-11-23T00:00:00Z")
# A served model's name (the store's rule for names); a name not served is a 404.
MODEL_NAME = TextParameter("name", max_length=64, pattern=r"[a-z0-9][a-z0-9_-]{0,63}", example="resnet50")
# GET /classifications?model=: records of the model of that name, served now or not.
MODEL = TextParameter("model", max_length=64, pattern=r"[a-z0-9][a-z0-9_-]{0,63}", example="resnet50")

Parameter = IntParameter | TextParameter

# Every query parameter, by the path and method that take it.
QUERY_PARAMETERS: dict[tuple[str, str], tuple[Parameter, ...]] = {
    ("/classify", "post"): (TOP_K,),
    ("/models/{name}/classify", "post"): (TOP_K,),
    ("/classifications", "get"): (LIMIT, CURSOR, LABEL, MODEL_VERSION, MODEL, SINCE, UNTIL),
}

# Every path parameter checked by this table, by the path and method that take it.
PATH_PARAMETERS: dict[tuple[str, str], tuple[TextParameter, ...]] = {
    ("/models/{name}", "get"): (MODEL_NAME,),
    ("/models/{name}/classify", "post"): (MODEL_NAME,),
}
