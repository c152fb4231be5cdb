"""Stored webhook deliveries for the operator: show one with why it failed, and put quarantined
ones back in the queue once the cause is fixed (`wa-cloud deliveries show|replay`).

Replaying a delivery that had partly indexed doubles nothing: every index write is keyed
(messages by number and wamid, statuses by wamid and status, events by their dedup key) and
skips what exists, so a second run adds only what is missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from wa_cloud.canonical import iso
from wa_cloud.db.queries import Q
from wa_cloud.tenants import audit

EXCERPT_BYTES: Final = 300
_AGO: Final = re.compile(r"(\d+)\s*([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# How many ids the audit row lists; the count is always there.
_AUDITED_IDS: Final = 100


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    id: int
    source: str
    received_at: datetime
    state: str
    attempts: int
    run_after: datetime
    processed_at: datetime | None
    last_error: str | None
    body: bytes
    quarantine_code: str | None
    quarantine_reason: str | None
    quarantined_at: datetime | None


async def load_delivery(conn: asyncpg.Connection, delivery_id: int) -> StoredDelivery | None:
    row = await conn.fetchrow(Q.delivery_with_quarantine, delivery_id)
    if row is None:
        return None
    return StoredDelivery(**{**dict(row), "body": bytes(row["body"])})


# Showing ---------------------------------------------------------------------------------------
def printable(text: str) -> str:
    """`text` safe for a terminal: control characters (escape sequences, bidi overrides) shown
    as escapes, since bodies and errors come from outside."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\u{ord(c):04x}" for c in text)


def _json_body(body: bytes) -> tuple[bool, Any]:
    try:
        return True, json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False, None


def _excerpt(body: bytes) -> str:
    return printable(body[:EXCERPT_BYTES].decode("utf-8", errors="backslashreplace"))


def delivery_json(delivery: StoredDelivery) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": delivery.id,
        "source": delivery.source,
        "received_at": iso(delivery.received_at),
        "state": delivery.state,
        "attempts": delivery.attempts,
        "run_after": iso(delivery.run_after),
        "processed_at": iso(delivery.processed_at),
        "last_error": delivery.last_error,
        "quarantine": None,
        "body_size": len(delivery.body),
    }
    if delivery.quarantine_code is not None:
        shown["quarantine"] = {
            "code": delivery.quarantine_code,
            "reason": delivery.quarantine_reason,
            "at": iso(delivery.quarantined_at),
        }
    is_json, document = _json_body(delivery.body)
    if is_json:
        shown["body"] = document
    elif delivery.body:
        shown["body_excerpt"] = _excerpt(delivery.body)
    return shown


def delivery_text(delivery: StoredDelivery) -> str:
    def at(value: datetime | None) -> str:
        return value.isoformat(sep=" ", timespec="seconds") if value else "-"

    lines = [
        f"delivery {delivery.id}",
        f"  source       {printable(delivery.source)}",
        f"  received at  {at(delivery.received_at)}",
        f"  state        {delivery.state}",
        f"  attempts     {delivery.attempts}",
        f"  run after    {at(delivery.run_after)}",
        f"  finished at  {at(delivery.processed_at)}",
        f"  last error   {printable(delivery.last_error or '-')}",
    ]
    if delivery.quarantine_code is not None:
        lines.append(
            f"  quarantine   {printable(delivery.quarantine_code)} at "
            f"{at(delivery.quarantined_at)}: {printable(delivery.quarantine_reason or '')}"
        )
    size = len(delivery.body)
    is_json, document = _json_body(delivery.body)
    if not delivery.body:
        lines.append("body: empty (cleared by retention, or never had one)")
    elif is_json:
        lines.append(f"body ({size} bytes, JSON):")
        lines.append(printable(json.dumps(document, indent=2, ensure_ascii=False)))
    else:
        shown = min(size, EXCERPT_BYTES)
        lines.append(f"body ({size} bytes, not JSON; the first {shown}):")
        lines.append(_excerpt(delivery.body))
    return "\n".join(lines)


# Replaying -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReplayCandidate:
    id: int
    source: str
    state: str
    body_cleared: bool
    code: str | None
    quarantined_at: datetime | None

    @property
    def refusal(self) -> str | None:
        """Why this delivery cannot be replayed, or None."""
        if self.state != "quarantined":
            return f"it is {self.state}, not quarantined"
        if self.body_cleared:
            return "its body was cleared by retention: there is nothing to process"
        return None


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    chosen: list[ReplayCandidate]  # replayed, or with a dry run what would be
    refused: dict[int, str]  # id: why not; by id, any refusal means nothing changed
    replayed: int  # rows put back in the queue (0 for a dry run or a refusal)


async def replay_by_id(
    conn: asyncpg.Connection, ids: Sequence[int], *, dry_run: bool, actor: str
) -> ReplayOutcome:
    """The named deliveries back to pending, all of them or (if any cannot be) none."""
    wanted = sorted(set(ids))
    async with conn.transaction():
        rows = await conn.fetch(Q.lock_deliveries_by_id, wanted)
        found = [ReplayCandidate(**dict(row)) for row in rows]
        refused = {c.id: c.refusal for c in found if c.refusal is not None}
        refused |= {i: "no such delivery" for i in set(wanted) - {c.id for c in found}}
        if refused or dry_run:
            return ReplayOutcome(found, dict(sorted(refused.items())), 0)
        replayed = await _replay(conn, found, actor, since=None)
    return ReplayOutcome(found, {}, replayed)


async def replay_since(
    conn: asyncpg.Connection, since: datetime, *, dry_run: bool, actor: str
) -> ReplayOutcome:
    """Every delivery quarantined at or after `since` back to pending; those whose body
    retention cleared are left as they are and listed as refused."""
    async with conn.transaction():
        rows = await conn.fetch(Q.lock_quarantined_since, since)
        found = [ReplayCandidate(**dict(row)) for row in rows]
        chosen = [c for c in found if c.refusal is None]
        refused = {c.id: c.refusal for c in found if c.refusal is not None}
        if dry_run or not chosen:
            return ReplayOutcome(chosen, refused, 0)
        replayed = await _replay(conn, chosen, actor, since=since)
    return ReplayOutcome(chosen, refused, replayed)


async def _replay(
    conn: asyncpg.Connection,
    chosen: list[ReplayCandidate],
    actor: str,
    *,
    since: datetime | None,
) -> int:
    ids = [c.id for c in chosen]
    replayed: int = await conn.fetchval(Q.replay_deliveries, ids)
    await audit.record(
        conn,
        "deliveries.replayed",
        tenant_id=None,
        actor=actor,
        detail={
            "count": replayed,
            "ids": ids[:_AUDITED_IDS],
            "since": iso(since),
        },
    )
    return replayed


def parse_since(text: str, now: datetime) -> datetime:
    """`2h`, `30m`, `1d`, `1w`, `1d12h` (ago from `now`), or an ISO 8601 time (UTC if it names
    no offset). ValueError for anything else."""
    compact = text.strip().lower()
    if compact and _AGO.sub("", compact).strip() == "":
        parts = dict.fromkeys(_UNITS.values(), 0)
        for amount, unit in _AGO.findall(compact):
            parts[_UNITS[unit]] += int(amount)
        return now - timedelta(**parts)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration like 2h, 30m or 1d nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
