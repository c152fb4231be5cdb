"""`wa-cloud rotate-key`: re-seal every secret under the current master key.

Run it with the new key in `WA_SECRET_KEY` and the old one(s) in `WA_PREVIOUS_SECRET_KEYS`
(processes started that way open both while it runs); once it reports nothing left under an old
key, the old key can be dropped. One transaction: all or nothing.
"""

from __future__ import annotations

import asyncpg

from wa_cloud.secretbox import SecretBox
from wa_cloud.tenants.sealed import ALL, SealedColumn


def _select(column: SealedColumn) -> str:
    # Names come from the fixed table in sealed.py, never from input.
    return (
        f"SELECT {column.key_column} AS key, {column.column} AS sealed FROM {column.table}"
        f" WHERE {column.column} IS NOT NULL FOR UPDATE"
    )


def _update(column: SealedColumn) -> str:
    return f"UPDATE {column.table} SET {column.column} = $2 WHERE {column.key_column} = $1"


async def rotate(conn: asyncpg.Connection, box: SecretBox) -> dict[str, int]:
    """Re-seal what an old key sealed; return how many values each column had re-sealed."""
    counts: dict[str, int] = {}
    async with conn.transaction():
        for column in ALL:
            changed = 0
            for row in await conn.fetch(_select(column)):
                blob = bytes(row["sealed"])
                if box.is_current(blob):
                    continue
                context = column.context(row["key"])
                plain = box.open(blob, context=context)
                await conn.execute(_update(column), row["key"], box.seal(plain, context=context))
                changed += 1
            counts[f"{column.table}.{column.column}"] = changed
    return counts
