"""Page cursors are signed with the store's own key: a cursor signed with any other key is refused.

A cursor names where the next page starts, so a client able to make one could read pages it was
never handed (another filter's records, any id range). Each store signs with its key: SQLite a
random one kept in its database, DynamoDB a configured ``RECORDS_CURSOR_SECRET`` (or, without one,
a key of its table); a cursor from another key is a 422 ``invalid_parameter``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path

import pytest

from classifier.config import Settings
from classifier.errors import InvalidParameter
from classifier.records import open_record_store
from classifier.records.cursors import Cursors, Filters
from classifier.records.dynamodb import DynamoRecordStore
from classifier.records.sqlite import SqliteRecordStore

from helpers.record_contract import BASE, record

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def unpadded_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signature_by_hand(key: bytes, body: str) -> str:
    """base64url of the first 18 bytes of HMAC-SHA256(key, body), with the standard library alone."""
    return base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()[:18]).decode()


def signed_by_hand(key: bytes, payload: object) -> str:
    """A cursor made with the standard library alone: base64url(JSON) '.' its signature."""
    body = unpadded_b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{signature_by_hand(key, body)}"


def filled(store: SqliteRecordStore, count: int = 5) -> SqliteRecordStore:
    for n in range(count):
        store.put(record(BASE - timedelta(seconds=n), n))
    return store


def test_a_cursor_is_the_hmac_of_its_body_under_the_key() -> None:
    # GIVEN a cursor made for a key
    cursor = Cursors(KEY).make("20261231T235958Z-x", Filters(label="tabby"))
    body, _, signature = cursor.partition(".")
    # THEN its signature is HMAC-SHA256 of its body under that key, as computed here by hand
    assert signature == signature_by_hand(KEY, body)
    # AND not what any other key gives
    assert signature != signature_by_hand(OTHER_KEY, body)


def test_a_cursor_signed_with_another_key_is_refused() -> None:
    # GIVEN a cursor made by a holder of another key, for the same position and filters
    filters = Filters(label="tabby")
    forged = Cursors(OTHER_KEY).make("20261231T235958Z-x", filters)
    # WHEN this key reads it THEN it is refused as not this API's
    with pytest.raises(InvalidParameter, match="not a cursor returned by this API"):
        Cursors(KEY).read(forged, filters)
    # AND the same cursor signed with this key is read back
    assert Cursors(KEY).read(Cursors(KEY).make("20261231T235958Z-x", filters), filters) == "20261231T235958Z-x"


def test_a_cursor_forged_by_hand_reads_only_with_the_right_key() -> None:
    # GIVEN a cursor written with the standard library, for this key and for another
    payload = ["20261231T235958Z-x", Filters().key()]
    # THEN the key it was signed with reads it, and no other
    assert Cursors(KEY).read(signed_by_hand(KEY, payload), Filters()) == "20261231T235958Z-x"
    for key in (OTHER_KEY, b"", b"classifier-cursor"):
        with pytest.raises(InvalidParameter):
            Cursors(KEY).read(signed_by_hand(key, payload), Filters())


def test_two_sqlite_stores_refuse_each_others_cursors(tmp_path: Path) -> None:
    # GIVEN two record databases, each with its own random key, holding the same records
    first = filled(SqliteRecordStore(tmp_path / "a" / "records.sqlite3"))
    second = filled(SqliteRecordStore(tmp_path / "b" / "records.sqlite3"))
    cursor = first.list(limit=2).next_cursor
    assert cursor is not None
    # WHEN the second is asked for the page after the first's cursor THEN it refuses it
    with pytest.raises(InvalidParameter):
        second.list(limit=2, cursor=cursor)
    # AND the first database, opened again (another process), still reads its own cursor: its key is kept
    reopened = SqliteRecordStore(tmp_path / "a" / "records.sqlite3")
    assert [r["id"] for r in reopened.list(limit=2, cursor=cursor).items] == \
        [r["id"] for r in first.list(limit=2, cursor=cursor).items]


def test_a_configured_secret_signs_the_cursors(tmp_path: Path) -> None:
    # GIVEN stores opened with RECORDS_CURSOR_SECRET, two with the same secret and one with another
    def opened(folder: str, secret: str) -> SqliteRecordStore:
        store = open_record_store(Settings(model_store=tmp_path / folder, records_cursor_secret=secret))
        assert isinstance(store, SqliteRecordStore)
        return filled(store)

    same_a, same_b, other = opened("a", "a shared secret"), opened("b", "a shared secret"), opened("c", "another")
    cursor = same_a.list(limit=2).next_cursor
    assert cursor is not None
    # THEN the store sharing the secret reads the cursor, the other refuses it
    assert len(same_b.list(limit=2, cursor=cursor).items) == 2
    with pytest.raises(InvalidParameter):
        other.list(limit=2, cursor=cursor)
    # AND the signature is the configured secret's, computed by hand
    body, _, signature = cursor.partition(".")
    assert signature == signature_by_hand(b"a shared secret", body)


def test_dynamodb_stores_sign_with_their_secret_or_their_table() -> None:
    # (Signing needs no table: nothing here calls DynamoDB.)
    filters = Filters(model_version="20261122T100000Z-0123456789ab")
    cursor = DynamoRecordStore("records-a").cursors.make({"id": {"S": "x"}}, filters)
    # Without a configured secret, another table's store refuses the cursor; the same table's reads it
    with pytest.raises(InvalidParameter):
        DynamoRecordStore("records-b").cursors.read(cursor, filters)
    assert DynamoRecordStore("records-a").cursors.read(cursor, filters) == {"id": {"S": "x"}}
    # With RECORDS_CURSOR_SECRET, only that secret's cursors are read, whatever the table
    signed = DynamoRecordStore("records-a", secret=KEY).cursors.make({"id": {"S": "x"}}, filters)
    assert DynamoRecordStore("records-b", secret=KEY).cursors.read(signed, filters) == {"id": {"S": "x"}}
    for store in (DynamoRecordStore("records-a"), DynamoRecordStore("records-a", secret=OTHER_KEY)):
        with pytest.raises(InvalidParameter):
            store.cursors.read(signed, filters)
