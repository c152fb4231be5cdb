"""`wa-cloud rotate-key`: re-seal every secret under the current master key, then check.

The order that keeps every process working: restart the processes with the new key in
`WA_SECRET_KEY` and the old one in `WA_PREVIOUS_SECRET_KEYS` (they open both), run
`rotate-key` (one transaction: all or nothing), and once it reports every value readable with
the new key, drop the old key at the next restart. A process still running with the old key
in its previous keys keeps opening everything meanwhile, before and after the re-seal.

A value no key of this process opens (sealed with a key it was not given, or damaged) is left
as it is and reported by table, column and row id, never by value; the check afterwards reads
every sealed value back and opens it with the current key alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from wa_cloud.secretbox import SecretBox, SecretUnreadable
from wa_cloud.tenants.sealed import ALL, SealedColumn


@dataclass(frozen=True, slots=True)
class UnreadableValue:
    """Where a sealed value is that the current key does not open (never the value)."""

    table: str
    column: str
    key_column: str
    key: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column} {self.key_column}={self.key}"


@dataclass(frozen=True, slots=True)
class RotationReport:
    resealed: dict[str, int]  # per "table.column": values re-sealed by this run
    checked: int  # sealed values read back afterwards
    unreadable: tuple[UnreadableValue, ...]  # of those, the ones the current key did not open

    @property
    def ok(self) -> bool:
        return not self.unreadable


def _select(column: SealedColumn, *, lock: bool) -> str:
    # Names come from the fixed table in sealed.py, never from input.
    return (
        f"SELECT {column.key_column} AS key, {column.column} AS sealed FROM {column.table}"
        f" WHERE {column.column} IS NOT NULL" + (" FOR UPDATE" if lock else "")
    )


def _update(column: SealedColumn) -> str:
    return f"UPDATE {column.table} SET {column.column} = $2 WHERE {column.key_column} = $1"


def _opens_with_current_key(box: SecretBox, column: SealedColumn, key: str, blob: bytes) -> bool:
    if not box.is_current(blob):
        return False
    try:
        box.open(blob, context=column.context(key))
    except (SecretUnreadable, ValueError):
        return False
    return True


async def reseal(conn: asyncpg.Connection, box: SecretBox) -> dict[str, int]:
    """Re-seal what an older key sealed, in one transaction; what does not open stays as it
    is (the check reports it). How many values each column had re-sealed."""
    counts: dict[str, int] = {}
    async with conn.transaction():
        for column in ALL:
            changed = 0
            for row in await conn.fetch(_select(column, lock=True)):
                blob = bytes(row["sealed"])
                if box.is_current(blob):
                    continue
                context = column.context(str(row["key"]))
                try:
                    plain = box.open(blob, context=context)
                except (SecretUnreadable, ValueError):
                    continue
                await conn.execute(_update(column), row["key"], box.seal(plain, context=context))
                changed += 1
            counts[f"{column.table}.{column.column}"] = changed
    return counts


async def check(conn: asyncpg.Connection, box: SecretBox) -> tuple[int, list[UnreadableValue]]:
    """Read every sealed value back and open it with the current key alone."""
    checked, unreadable = 0, []
    for column in ALL:
        for row in await conn.fetch(_select(column, lock=False)):
            checked += 1
            key = str(row["key"])
            if not _opens_with_current_key(box, column, key, bytes(row["sealed"])):
                unreadable.append(
                    UnreadableValue(column.table, column.column, column.key_column, key)
                )
    return checked, unreadable


async def rotate(conn: asyncpg.Connection, box: SecretBox) -> RotationReport:
    resealed = await reseal(conn, box)
    checked, unreadable = await check(conn, box)
    return RotationReport(resealed, checked, tuple(unreadable))
