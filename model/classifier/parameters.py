"""The API's query parameters: one table of names, bounds and defaults.

The routes read parameters through it, and tests/test_openapi.py checks that the
hand-kept ``openapi.json`` documents exactly these bounds and defaults.
"""

from __future__ import annotations

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


TOP_K = IntParameter("top_k", default=5, minimum=1, maximum=20)
LIMIT = IntParameter("limit", default=20, minimum=1, maximum=100)

# Every bounded parameter, by the path and method that take it.
QUERY_PARAMETERS: dict[tuple[str, str], tuple[IntParameter, ...]] = {
    ("/classify", "post"): (TOP_K,),
    ("/classifications", "get"): (LIMIT,),
}
