"""Page cursors: opaque, signed with HMAC-SHA256, and bound to the filters they were read with."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from classifier.errors import InvalidParameter
from classifier.records.ids import id_bound

# Longer than any cursor this API makes (an id, the filters' digest, a signature), far below a URL's limit.
MAX_CURSOR_CHARS = 512
_CURSOR_RE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Filters:
    """What a page is restricted to: top-1 ``label``, ``model_version``, [``since``, ``until``), the
    model's name (``model``) and the record's ``owner`` (None: every owner's)."""

    label: str | None = None
    model_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    owner: str | None = None

    def key(self) -> str:
        """A stable digest of the filters, bound into cursors (a digest: an owner's ARN is long)."""
        text = json.dumps([self.label, self.model_version, self.since and id_bound(self.since),
                           self.until and id_bound(self.until), self.model, self.owner])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def equalities(self) -> dict[str, str]:
        """The filters that select by equality (the time range aside), by record attribute."""
        pairs = {"owner": self.owner, "label": self.label, "model_version": self.model_version, "model": self.model}
        return {name: value for name, value in pairs.items() if value is not None}



class Cursors:
    """Opaque, tamper-evident page cursors: ``base64url(json [key, filters]) . base64url(hmac)``."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def make(self, key: Any, filters: Filters) -> str:
        body = base64.urlsafe_b64encode(json.dumps([key, filters.key()], separators=(",", ":")).encode())
        return f"{body.decode().rstrip('=')}.{self._sign(body.rstrip(b'='))}"

    def read(self, cursor: str, filters: Filters) -> Any:
        """The key a cursor holds, if this API signed it for these filters; else 422.

        Whatever arrives (non-ASCII, kilobytes, binary) is a 422: the shape is checked before the
        signature, since ``compare_digest`` refuses text that is not ASCII with a TypeError.
        """
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS or not _CURSOR_RE.fullmatch(cursor):
            raise InvalidParameter("cursor: not a cursor returned by this API")
        body, _, signature = cursor.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body.encode()).encode()):
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
