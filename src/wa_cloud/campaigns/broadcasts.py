"""Creating a campaign and reading its progress.

Creation checks everything it can once, before anything is stored: the number is the caller's,
the template is approved and every recipient's variables fit it (or the free-form message is
valid), numbers are E.164, duplicates and opted-out contacts are skipped, and the cost is
estimated. The recipients become rows; the campaign runner (runner.py) moves them into the
outbox at the number's pace. A dry run answers the same without storing anything.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from wa_cloud.ai.prompt import valid_timezone
from wa_cloud.campaigns import cost
from wa_cloud.campaigns.recipients import (
    Recipient,
    RecipientList,
    Skipped,
    Variables,
    template_components,
)
from wa_cloud.canonical import iso
from wa_cloud.db.pool import jsonb_text
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, Unprocessable
from wa_cloud.outbox.compose import SEND_TYPES, Composed, compose
from wa_cloud.outbox.enqueue import approved_template, sending_number
from wa_cloud.outbox.templates import TemplateFetches, check_parameters
from wa_cloud.providers.base import Capabilities, ProviderFor
from wa_cloud.providers.numbers import capabilities_of
from wa_cloud.window import window_state

MARKETING: Final = "MARKETING"
SERVICE: Final = "SERVICE"  # a free-form message: only inside open windows, never billed
MAX_AHEAD: Final = timedelta(days=366)  # a campaign scheduled further is a typo
# An `at` this far past is clock skew or a form submitted a moment late: it sends at once.
# Further, it is a typo too (the wrong year), and sending the whole list now would be wrong.
MAX_BEHIND: Final = timedelta(minutes=5)
SHOWN_SKIPPED: Final = 1000  # skipped lines listed in an answer (recipients.csv has them all)


@dataclass(frozen=True, slots=True)
class Campaign:
    """A checked request: what every recipient gets, and to whom."""

    phone_number_id: str
    name: str
    template: dict[str, Any] | None
    message: dict[str, Any] | None
    category: str
    run_at: datetime
    sendable: list[Recipient]
    skipped: list[Skipped]
    estimate: dict[str, Any]


def _name(body: Mapping[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise Unprocessable("'name' must be a string of 1 to 200 characters.", "invalid_field")
    return name.strip()


async def _number_timezone(
    conn: asyncpg.Connection, phone_number_id: str, tenant_id: UUID
) -> ZoneInfo:
    zone = await conn.fetchval(Q.number_timezone, phone_number_id, tenant_id)
    return ZoneInfo(zone if zone and valid_timezone(zone) else "UTC")


def parse_at(value: Any, zone: ZoneInfo) -> datetime:
    """`"at"`: an ISO date-time; without an offset it is the number's local time. Neither
    more than a year ahead nor more than a few minutes past."""
    if not isinstance(value, str):
        raise Unprocessable("'at' must be an ISO 8601 date-time.", "invalid_field")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise Unprocessable("'at' must be an ISO 8601 date-time.", "invalid_field") from None
    at = at.replace(tzinfo=zone) if at.tzinfo is None else at
    try:
        at = at.astimezone(UTC)
    except OverflowError:
        raise Unprocessable("'at' is out of range.", "invalid_field") from None
    now = datetime.now(UTC)
    if at > now + MAX_AHEAD:
        raise Unprocessable("'at' may be at most a year ahead.", "invalid_field")
    if at < now - MAX_BEHIND:
        raise Unprocessable(
            f"'at' ({at.isoformat()}) is in the past: give a future time, or leave 'at' out to "
            "send now.",
            "invalid_field",
        )
    return at


def _message(body: Mapping[str, Any]) -> dict[str, Any]:
    message = body.get("message")
    if not isinstance(message, Mapping):
        raise Unprocessable('\'message\' must be a send shape: {"type", "<type>": {...}}.')
    kind = message.get("type")
    if kind == "template":
        raise Unprocessable(
            "A template campaign names it in 'template' (with per-recipient variables).",
            "invalid_type",
        )
    if kind not in SEND_TYPES or kind not in message:
        raise Unprocessable('\'message\' must be a send shape: {"type", "<type>": {...}}.')
    return {"type": kind, kind: message[kind]}


def _template(body: Mapping[str, Any]) -> tuple[str, str]:
    template = body.get("template")
    name = template.get("name") if isinstance(template, Mapping) else None
    language = template.get("language") if isinstance(template, Mapping) else None
    code = language.get("code") if isinstance(language, Mapping) else language
    if not isinstance(name, str) or not isinstance(code, str) or not name or not code:
        raise Unprocessable('\'template\' must be {"name", "language": {"code"}}.', "invalid_field")
    return name, code


def compose_for(
    campaign_template: Mapping[str, Any] | None,
    message: Mapping[str, Any] | None,
    to: str,
    variables: Variables,
    callback: str | None = None,
) -> Composed:
    """The send one recipient gets; `callback` goes as its `biz_opaque_callback_data`, which
    Meta echoes in the send's statuses (see `sending_line`)."""
    echo = {} if callback is None else {"biz_opaque_callback_data": callback}
    if campaign_template is not None:
        template = {
            "name": campaign_template["name"],
            "language": {"code": campaign_template["language"]},
            "components": template_components(variables),
        }
        return compose({"to": to, "type": "template", "template": template, **echo})
    assert message is not None
    return compose({"to": to, **message, **echo})


# Callback data starting so is a campaign's own (see `sending_line`): reserved for it.
CALLBACK_PREFIX: Final = "broadcast:"


def sending_line(broadcast_id: UUID, line: int) -> str:
    """The callback data a campaign's send carries: its campaign and line, so a send whose
    outcome a dead worker never recorded is recognised in Meta's statuses (and the tenant's
    forwarded statuses say which campaign and line they are about)."""
    return f"{CALLBACK_PREFIX}{broadcast_id}:{line}"


def _fitting_template(
    template: Mapping[str, Any], stored: Mapping[str, Any], recipients: Sequence[Recipient]
) -> tuple[list[Recipient], list[Skipped]]:
    """The recipients whose variables fit the approved template, and the others with why."""
    fitting: list[Recipient] = []
    mismatched: list[Skipped] = []
    for recipient in recipients:
        try:
            composed = compose_for(template, None, recipient.to, recipient.variables)
            check_parameters(dict(stored), composed.body["template"])
        except ApiError as exc:
            reason = f"variables_mismatch: {exc.message}"[:200]
            mismatched.append(Skipped(recipient.to, reason, recipient.line))
            continue
        fitting.append(recipient)
    return fitting, mismatched


def honours_opt_outs(category: str) -> bool:
    """Whether an opted-out contact is skipped. Utility and authentication templates are
    transactional and still go; a free-form message does not: writing STOP opens the very
    window it needs."""
    return category in (MARKETING, SERVICE)


@dataclass(frozen=True, slots=True)
class _Screened:
    kept: list[Recipient]
    skipped: list[Skipped]  # every skipped line, in line order
    estimate: dict[str, Any]


def _screen(
    sendable: Sequence[Recipient],
    skipped: Sequence[Skipped],
    category: str,
    is_template: bool,
    capabilities: Capabilities,
    opted: set[str],
    contacts: Mapping[str, asyncpg.Record],
) -> _Screened:
    """Skip the opted-out and (free-form) those whose window is closed; estimate the rest."""
    kept: list[Recipient] = []
    all_skipped = list(skipped)
    windows: list[tuple[str, bool]] = []
    skips_opted_out = honours_opt_outs(category)
    for recipient in sendable:
        contact = contacts.get(recipient.to)
        is_open = window_state(
            contact["last_inbound_at"] if contact else None,
            contact["window_closed_at"] if contact else None,
        ).open
        if skips_opted_out and recipient.to in opted:
            all_skipped.append(Skipped(recipient.to, "opted_out", recipient.line))
        elif category == SERVICE and capabilities.customer_service_window and not is_open:
            all_skipped.append(Skipped(recipient.to, "window_closed", recipient.line))
        else:
            kept.append(recipient)
            windows.append((recipient.to, is_open))
    if not capabilities.templates:
        windows = [(to, True) for to, _ in windows]  # a web session costs Meta nothing
    all_skipped.sort(key=lambda s: s.line or 0)
    estimate = cost.estimate(windows, category.lower() if is_template else "service")
    return _Screened(kept, all_skipped, estimate)


async def check_campaign(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    body: Mapping[str, Any],
    recipients: RecipientList,
    provider_for: ProviderFor,
    fetches: TemplateFetches,
) -> Campaign:
    """The checked campaign. Checking 100,000 recipients is CPU work, done in a thread so the
    process answers others meanwhile; only the database is reached from the event loop."""
    name = _name(body)
    if ("template" in body) == ("message" in body):
        raise Unprocessable("Give exactly one of 'template' and 'message'.", "invalid_field")
    async with pool.acquire() as conn:
        number = await sending_number(conn, tenant_id, body, provider_for)
        sender: str = number["phone_number_id"]
        zone = await _number_timezone(conn, sender, tenant_id)
    run_at = parse_at(body["at"], zone) if body.get("at") is not None else datetime.now(UTC)
    capabilities = capabilities_of(number)
    skipped = list(recipients.skipped)
    sendable: list[Recipient]
    template: dict[str, Any] | None = None
    message: dict[str, Any] | None = None
    if "template" in body:
        if not capabilities.templates:
            raise Unprocessable(
                "This number is a web session: it has no templates; send a 'message'.",
                "templates_unsupported",
            )
        template_name, language = _template(body)
        stored = await approved_template(
            pool, number, template_name, language, provider_for, fetches
        )
        category = str(stored["category"] or MARKETING).upper()
        template = {"name": template_name, "language": language}
        sendable, mismatched = await asyncio.to_thread(
            _fitting_template, template, stored, recipients.recipients
        )
        skipped += mismatched
    else:
        message = _message(body)
        category = SERVICE
        compose_for(None, message, "10000000", None)  # the shape is checked once, for everyone
        sendable = list(recipients.recipients)

    numbers = [r.to for r in sendable]
    async with pool.acquire() as conn:
        opted = {
            r["recipient"] for r in await conn.fetch(Q.opted_out_of, sender, numbers, tenant_id)
        }
        contacts = {
            r["wa_id"]: r
            for r in await conn.fetch(Q.recipient_contacts, sender, tenant_id, numbers)
        }
    screened = await asyncio.to_thread(
        _screen,
        sendable,
        skipped,
        category,
        template is not None,
        capabilities,
        opted,
        contacts,
    )
    return Campaign(
        phone_number_id=sender,
        name=name,
        template=template,
        message=message,
        category=category,
        run_at=run_at,
        sendable=screened.kept,
        skipped=screened.skipped,
        estimate=screened.estimate,
    )


def _recipient_columns(
    campaign: Campaign,
) -> tuple[list[str], list[int], list[str | None], list[str | None]]:
    """The recipient rows as insert_broadcast_recipients takes them: one array per column."""
    rows = [(r.to, r.line, jsonb_text(r.variables), None) for r in campaign.sendable] + [
        (s.to, s.line, None, s.reason) for s in campaign.skipped if s.line is not None
    ]
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


async def store_campaign(conn: asyncpg.Connection, tenant_id: UUID, campaign: Campaign) -> UUID:
    # 100,000 variables to serialise: a fifth of a second that other requests need not wait.
    columns = await asyncio.to_thread(_recipient_columns, campaign)
    async with conn.transaction():
        status = "scheduled" if campaign.run_at > datetime.now(UTC) else "running"
        broadcast_id: UUID = await conn.fetchval(
            Q.insert_broadcast,
            tenant_id,
            campaign.phone_number_id,
            campaign.name,
            campaign.template,
            campaign.message,
            campaign.category,
            status,
            campaign.run_at,
            campaign.estimate,
        )
        await conn.execute(Q.insert_broadcast_recipients, broadcast_id, *columns)
        await conn.execute(Q.ensure_pacing, campaign.phone_number_id)
        await conn.execute(Q.notify_campaigns, str(broadcast_id))
    return broadcast_id


def dry_run_json(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": None,
        "dry_run": True,
        "name": campaign.name,
        "from": campaign.phone_number_id,
        "status": "scheduled" if campaign.run_at > datetime.now(UTC) else "running",
        "at": iso(campaign.run_at),
        "category": campaign.category,
        "counts": {
            "total": len(campaign.sendable) + len(campaign.skipped),
            "queued": len(campaign.sendable),
            "sent": 0,
            "delivered": 0,
            "read": 0,
            "failed": 0,
            "skipped": len(campaign.skipped),
        },
        "skipped": [s.as_json() for s in campaign.skipped[:SHOWN_SKIPPED]],
        "estimate": campaign.estimate,
    }


COUNTS: Final = ("total", "queued", "sent", "delivered", "read", "failed", "skipped")


def summary_json(row: asyncpg.Record, counts: asyncpg.Record | None) -> dict[str, Any]:
    """A campaign as lists show it: what it sends, where it stands, its counts."""
    template = row["template"]
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "from": row["phone_number_id"],
        "status": row["status"],
        "paused_reason": row["paused_reason"],
        "held_reason": row["held_reason"],
        "at": iso(row["run_at"]),
        "category": row["category"],
        "template": (
            {"name": template["name"], "language": {"code": template["language"]}}
            if template
            else None
        ),
        "message": row["message"],
        "counts": {key: counts[key] if counts else 0 for key in COUNTS},
        "estimate": row["estimate"],
        "created_at": iso(row["created_at"]),
        "finished_at": iso(row["finished_at"]),
    }


async def summaries_json(
    conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]
) -> list[dict[str, Any]]:
    counts = {
        c["broadcast_id"]: c for c in await conn.fetch(Q.broadcast_counts, [r["id"] for r in rows])
    }
    return [summary_json(r, counts.get(r["id"])) for r in rows]


async def broadcast_json(
    conn: asyncpg.Connection, row: asyncpg.Record, *, skipped: Sequence[Skipped] = ()
) -> dict[str, Any]:
    """One campaign in full: its summary, failures by code, skips by reason, the cost."""
    counts = await conn.fetchrow(Q.broadcast_counts, [row["id"]])
    failures = await conn.fetch(Q.broadcast_failures, row["id"])
    skips = await conn.fetch(Q.broadcast_skips, row["id"])
    table = cost.price_table()
    billed = await conn.fetch(Q.broadcast_billed, row["id"], table.longest)
    actual = sum(
        (table.price(b["prefix"], b["category"] or "") * b["n"] for b in billed), Decimal(0)
    )
    shown = summary_json(row, counts)
    shown["failed_by_code"] = {f["code"]: f["n"] for f in failures}
    shown["skipped_by_reason"] = {s["reason"]: s["n"] for s in skips}
    shown["cost"] = {
        "billable": counts["billable"] if counts else 0,
        "currency": cost.CURRENCY,
        "amount": float(round(actual, 4)),
    }
    if skipped:
        shown["skipped"] = [s.as_json() for s in skipped[:SHOWN_SKIPPED]]
    return shown


CSV_COLUMNS: Final = ("to", "status", "wamid", "error_code", "reason")
# A cell a spreadsheet would run as a formula (OWASP's CSV injection list).
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_text(cell: str) -> str:
    """The cell as text a spreadsheet shows, never runs: a leading `'` marks it so. A line
    that was not a phone number is kept as the tenant's list had it."""
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell


def recipients_csv_lines(rows: Sequence[asyncpg.Record]) -> str:
    """recipients.csv rows: the outcome of each line (a skipped line says why)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for r in rows:
        if r["state"] == "skipped":
            status, reason = "skipped", r["reason"]
        elif r["status"] is None:
            status, reason = "queued" if r["state"] == "pending" else "unknown", None
        else:
            status, reason = r["status"], r["error_title"]
        cells = [r["recipient"], status, r["wamid"] or "", r["error_code"] or "", reason or ""]
        writer.writerow([_spreadsheet_text(str(cell)) for cell in cells])
    return out.getvalue()
