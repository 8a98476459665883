"""The records table's key design: which indexes exist, and how their partition keys are sharded.

Why shards: DynamoDB writes at most about 1,000 units a second to one partition key value, of a
table or of an index, and record ids grow with time, so adaptive capacity cannot split the heat.
A bulk job writes thousands of records a second with one model version, one owner and often one
dominant label. So every index partition key is ``<value>#<shard>``, the shard a hash of the
record id (``shard_of``), and a listing queries the shards of its key and merges them newest first
(``classifier.records.dynamodb``). With 16 shards, no key value takes more than 1/16 of a job's
writes (a label on 90% of the images: 0.9/16). The table's own key, the record id, is unique.

Why few indexes: every index an item lands in costs one more write unit, whatever its projection.
A *family* is an index serving one set of equality filters (``FAMILIES``); the deployer picks
them (``RECORDS_INDEXES``; the CDK context key ``records_indexes``). By default two: ``time``
(every record, newest first) and ``owner`` (a caller's own), so a record costs 3 write units (the
table and two indexes). A filter no family covers is answered from the nearest family's shards
with a filter expression, within the same bounded read (``DynamoRecordStore.list``): its pages
may hold fewer items than asked, and carry a cursor while there is more. docs/bulk-and-records.md
gives the arithmetic.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TABLE_KEY = "id"
TTL_ATTRIBUTE = "expires_at"
# Plain attributes every record item carries, for filter expressions and ownership checks.
FILTER_ATTRIBUTES = ("owner", "label", "model_version", "model")
DEFAULT_SHARDS = 16
MAX_SHARDS = 64
DEFAULT_FAMILIES = ("time", "owner")


@dataclass(frozen=True)
class Family:
    """One index: the equality filters it serves, its name and its partition key attribute."""

    name: str
    filters: tuple[str, ...]

    @property
    def index(self) -> str:
        return f"by_{self.name}"

    @property
    def attribute(self) -> str:
        return f"{self.name}_key"

    def value(self, values: Mapping[str, str], shard: int) -> str:
        """The partition key value of ``values`` (one per filter of the family) in ``shard``:
        ``<value>#<shard>``, two values joined by U+001F; the shard's fixed width keeps it unambiguous."""
        return "\x1f".join(values[f] for f in self.filters) + f"#{shard:02d}"


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("time", ()),
    Family("owner", ("owner",)),
    Family("label", ("label",)),
    Family("model_version", ("model_version",)),
    Family("label_version", ("label", "model_version")),
    Family("model", ("model",)),
    Family("owner_label", ("owner", "label")),
)}


def parse_families(text: str | Iterable[str]) -> tuple[str, ...]:
    """A list of family names (comma-separated text, or a list), checked; ``time`` is required."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown records index {unknown[0]!r}: choose among {', '.join(FAMILIES)}")
    if "time" not in names:
        raise ValueError("the records indexes must include 'time' (every record, newest first)")
    return tuple(dict.fromkeys(names))


def shard_of(record_id: str, shards: int) -> int:
    """The shard of a record: a stable hash of its id (ids end in random hex, so shards fill evenly)."""
    return zlib.crc32(record_id.encode()) % shards


@dataclass(frozen=True)
class KeyLayout:
    """The indexes a table has and its shard count: what a writer puts on an item, what a reader queries."""

    families: tuple[str, ...] = DEFAULT_FAMILIES
    shards: int = DEFAULT_SHARDS

    def __post_init__(self) -> None:
        parse_families(self.families)
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"records shards must be from 1 to {MAX_SHARDS}, got {self.shards}")

    def index_keys(self, record_id: str, values: Mapping[str, str | None]) -> dict[str, str]:
        """The index partition keys of one record item (sparse: none for a family missing a value)."""
        shard = shard_of(record_id, self.shards)
        keys = {}
        for name in self.families:
            family = FAMILIES[name]
            if all(values.get(f) is not None for f in family.filters):
                keys[family.attribute] = family.value({f: str(values[f]) for f in family.filters}, shard)
        return keys

    def plan(self, equalities: Mapping[str, str]) -> tuple[Family, dict[str, str], dict[str, str]]:
        """The family that serves these equality filters best (the most of them), the values of its
        key, and the filters left for a filter expression."""
        usable = [FAMILIES[n] for n in self.families if set(FAMILIES[n].filters) <= set(equalities)]
        family = max(usable, key=lambda f: len(f.filters))
        keyed = {f: equalities[f] for f in family.filters}
        return family, keyed, {k: v for k, v in equalities.items() if k not in keyed}

    def write_units(self, item_bytes: int) -> int:
        """Write units of one record of ``item_bytes``: the table and each index, 1 KB a unit each."""
        per_copy = -(-item_bytes // 1024)
        return per_copy * (1 + len(self.families))

    def table_definition(self, name: str) -> dict[str, Any]:
        """``create_table`` arguments for the records table (on demand), as the CDK app declares it."""
        indexes = [FAMILIES[n] for n in self.families]
        return {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": TABLE_KEY, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}
                                     for key in (TABLE_KEY, *(f.attribute for f in indexes))],
            "GlobalSecondaryIndexes": [
                {"IndexName": f.index, "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": f.attribute, "KeyType": "HASH"},
                               {"AttributeName": TABLE_KEY, "KeyType": "RANGE"}]}
                for f in indexes],
        }
