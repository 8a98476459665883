"""Page cursors: opaque, signed with HMAC-SHA256, and bound to the filters they were read with."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from classifier.errors import InvalidParameter
from classifier.records.ids import id_bound


@dataclass(frozen=True)
class Filters:
    """What a page is restricted to: top-1 ``label``, ``model_version``, [``since``, ``until``)."""

    label: str | None = None
    model_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def key(self) -> str:
        """A stable text of the filters, bound into cursors."""
        return json.dumps([self.label, self.model_version, self.since and id_bound(self.since),
                           self.until and id_bound(self.until)])



class Cursors:
    """Opaque, tamper-evident page cursors: ``base64url(json [key, filters]) . base64url(hmac)``."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def make(self, key: Any, filters: Filters) -> str:
        body = base64.urlsafe_b64encode(json.dumps([key, filters.key()], separators=(",", ":")).encode())
        return f"{body.decode().rstrip('=')}.{self._sign(body.rstrip(b'='))}"

    def read(self, cursor: str, filters: Filters) -> Any:
        """The key a cursor holds, if this API signed it for these filters; else 422."""
        body, _, signature = cursor.partition(".")
        if not body or not signature or not hmac.compare_digest(signature, self._sign(body.encode())):
            raise InvalidParameter("cursor: not a cursor returned by this API")
        try:
            key, bound = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error, TypeError):
            raise InvalidParameter("cursor: not a cursor returned by this API") from None
        if bound != filters.key():
            raise InvalidParameter("cursor: it was returned for other filters; start again without it")
        return key

    def _sign(self, body: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.secret, body, hashlib.sha256).digest()[:18]).decode()
