"""What a web session's gateway tells us beyond customers' messages, indexed in the batch's
transaction: the business's own messages from its phone, and the session's state.

A message typed on the business's phone is stored as outbound, written by a human, and pauses
the assistant in that conversation as a human takeover does. The session's news moves its row
in `web_sessions` (connecting, qr, open, closed, refused, logged out) and tells the watchdog
what to do next; a session opened by the wrong phone, or by a phone another number already
runs, is refused and logged out at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from wa_cloud.ai.config import DEFAULTS
from wa_cloud.backoff import Backoff
from wa_cloud.db.pool import jsonb_text
from wa_cloud.db.queries import Q
from wa_cloud.errors import WaCloudError
from wa_cloud.events import EchoMessage, FieldEvent
from wa_cloud.forwarding.events import NUMBER_UPDATED, enqueue_forward
from wa_cloud.inbound.parse import mapping_of
from wa_cloud.providers.websession import jid_digits

# What we show as a QR code: an image data URL and nothing else (the gateway is a tenant's).
QR_IMAGE = re.compile(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/]{16,200000}={0,2}")
# How often the watchdog asks the gateway about a session nobody has heard from.
CHECK_SECONDS = 60.0
RECONNECT_BACKOFF = Backoff(base=5.0, cap=600.0)
# Baileys' "logged out" disconnect code: the phone unlinked the device; only a scan brings it back.
LOGGED_OUT_CODE = 401


class EchoTooEarly(WaCloudError):
    """A message from the business's phone with an id we do not know, while a send of ours to
    that contact waits for the gateway's answer: it may be that send's own echo. The delivery
    is tried again shortly, when the send's id is stored."""


@dataclass(frozen=True, slots=True)
class Echo:
    tenant_id: UUID
    event: EchoMessage
    delivery_id: int


@dataclass(frozen=True, slots=True)
class SessionNews:
    tenant_id: UUID
    event: FieldEvent


async def index_echoes(conn: asyncpg.Connection, echoes: Sequence[Echo]) -> None:
    """Each message from the business's phone (rare: a person typing): one at a time."""
    for echo in echoes:
        event, tenant = echo.event, echo.tenant_id
        number = event.route.phone_number_id
        if await conn.fetchval(Q.message_known, number, event.wamid):
            continue  # our own send, or this echo again
        recipient = event.recipient
        contact_id = await conn.fetchval(
            Q.contact_for_echo, tenant, number, recipient.wa_id, recipient.user_id
        )
        if contact_id is None:
            continue
        if await conn.fetchval(
            Q.send_in_flight, number, contact_id, recipient.wa_id or recipient.user_id
        ):
            raise EchoTooEarly(f"a send to contact {contact_id} is in flight")
        stored = await conn.fetchval(
            Q.insert_echo,
            tenant,
            number,
            contact_id,
            event.wamid,
            event.type,
            event.text,
            jsonb_text(dict(event.raw)),
            event.timestamp,
            echo.delivery_id,
            recipient.wa_id or recipient.user_id,
        )
        if stored is not None:
            # A person answers from the phone: the assistant keeps out of it a while.
            await conn.execute(
                Q.human_takeover, contact_id, number, tenant, DEFAULTS.human_takeover_minutes
            )


@dataclass(frozen=True, slots=True)
class _Move:
    state: str
    reason: str | None = None
    qr: str | None = None
    pairing_code: str | None = None
    wuid: str | None = None
    profile_name: str | None = None
    action: str = "check"
    due_in: float = CHECK_SECONDS
    mail: bool = False


async def apply_session_news(conn: asyncpg.Connection, news: Sequence[SessionNews]) -> None:
    for item in news:
        number = str(item.event.route.phone_number_id)
        data = mapping_of(item.event.raw.get("data"))
        kind = item.event.kind
        wuid = jid_digits(data.get("wuid") if isinstance(data.get("wuid"), str) else None)
        if kind not in ("qrcode.updated", "connection.update"):
            continue
        row = await conn.fetchrow(Q.session_for_event, number, item.tenant_id, wuid)
        if row is None:
            continue  # removed meanwhile
        if kind == "qrcode.updated":
            # The gateway's events are not ordered: a code posted before the scan and
            # arriving after it is stale, not a new wait for one; nor does it undo a refusal
            # (a new connect sets the state itself, and its codes follow).
            move = None if row["state"] in ("open", "refused") else _qr_move(data)
        else:
            move = _connection_move(data, wuid, row)
        if move is None:
            continue
        await conn.execute(
            Q.set_session,
            number,
            item.tenant_id,
            move.state,
            move.reason,
            move.qr,
            move.pairing_code,
            move.wuid,
            move.profile_name,
            move.action,
            move.due_in,
            move.mail,
        )
        if move.state != row["state"]:
            payload = {
                "phone_number_id": number,
                "provider": "websession",
                "state": move.state,
                "reason": move.reason,
            }
            await enqueue_forward(conn, item.tenant_id, NUMBER_UPDATED, payload, None)


def _qr_move(data: Mapping[str, Any]) -> _Move | None:
    qr = mapping_of(data.get("qrcode"))
    image = qr.get("base64")
    if isinstance(image, str) and QR_IMAGE.fullmatch(image):
        pairing = qr.get("pairingCode")
        return _Move("qr", qr=image, pairing_code=pairing if isinstance(pairing, str) else None)
    if data.get("statusCode") is not None or data.get("message"):
        # The gateway gave up showing codes: a person must ask to connect again.
        return _Move(
            "refused", "No one scanned the QR code in time.", action="none", due_in=0, mail=True
        )
    return None


def _connection_move(data: Mapping[str, Any], wuid: str | None, row: asyncpg.Record) -> _Move:
    state = data.get("state")
    code = data.get("statusReason")
    if state == "open":
        registered = row["display_phone_number"]  # a web session's: digits (the API's rule)
        if wuid is not None and registered and wuid != registered:
            # Clients sharing one number by mistake were the old platform's worst bug.
            reason = f"The phone that scanned the code (+{wuid}) is not this number."
            return _Move("refused", reason, action="logout", due_in=0)
        if row["taken_by"] is not None:
            reason = f"The phone +{wuid} already runs another number here."
            return _Move("refused", reason, action="logout", due_in=0)
        profile = data.get("profileName")
        name = profile if isinstance(profile, str) else None
        return _Move("open", wuid=wuid, profile_name=name)
    if state == "connecting":
        return _Move("connecting")
    if state == "refused":
        return _Move(
            "refused", "No one scanned the QR code in time.", action="none", due_in=0, mail=True
        )
    if code == LOGGED_OUT_CODE:
        # Unlinked from the phone: a new QR code, and the business told to scan it.
        reason = "The session was logged out from the phone."
        return _Move("logged_out", reason, action="connect", due_in=0, mail=True)
    reason = f"The session closed (code {code})." if code is not None else "The session closed."
    delay = RECONNECT_BACKOFF.delay(int(row["attempts"]) + 1)
    return _Move("closed", reason, action="connect", due_in=delay)
