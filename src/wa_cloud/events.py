"""The typed model of what Meta (or a gateway) tells us.

Frozen, slotted dataclasses. Every event keeps its raw object: a type or enum value Meta adds
tomorrow is carried as `UNKNOWN` with the raw payload, never a crash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class _Open(StrEnum):
    """A StrEnum whose unknown values map to UNKNOWN instead of raising."""

    @classmethod
    def parse(cls, value: object) -> Any:
        try:
            return cls(str(value))
        except ValueError:
            return cls("unknown")


class MessageType(_Open):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    BUTTON = "button"
    REACTION = "reaction"
    ORDER = "order"
    SYSTEM = "system"
    REVOKE = "revoke"
    EDIT = "edit"
    UNSUPPORTED = "unsupported"
    UNKNOWN = "unknown"


class StatusKind(_Open):
    ACCEPTED = "accepted"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"
    UNKNOWN = "unknown"


# System notices are Meta's, not the user's: they do not open the customer-service window.
WINDOW_NEUTRAL_TYPES = frozenset({"system"})


@dataclass(frozen=True, slots=True)
class Contact:
    wa_id: str | None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """Where a change was addressed: the business number and its WABA."""

    phone_number_id: str | None
    display_phone_number: str | None
    waba_id: str | None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    route: Route
    wamid: str
    type: str  # Meta's type string, kept even when `kind` is UNKNOWN
    kind: MessageType
    sender: Contact
    timestamp: datetime | None
    text: str | None
    context_wamid: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def opens_window(self) -> bool:
        return self.type not in WINDOW_NEUTRAL_TYPES


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    route: Route
    wamid: str
    status: str
    kind: StatusKind
    timestamp: datetime | None
    recipient_id: str | None
    recipient_user_id: str | None
    errors: tuple[Mapping[str, Any], ...]
    pricing: Mapping[str, Any] | None
    conversation: Mapping[str, Any] | None
    biz_opaque_callback_data: str | None
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class EchoMessage:
    """A message the business sent from its own phone (a web session's `fromMe`): stored as
    outbound, written by a human."""

    route: Route
    wamid: str
    type: str
    recipient: Contact
    timestamp: datetime | None
    text: str | None
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class FieldEvent:
    """Anything that is not a message or a status: template, account and quality updates,
    out-of-band errors, elements we could not read. Stored whole."""

    route: Route
    field: str
    kind: str
    time: datetime | None
    # dataclasses.field: inside this class, `field` names the attribute above.
    raw: Mapping[str, Any] = dataclasses.field(repr=False)


Event = InboundMessage | StatusUpdate | EchoMessage | FieldEvent


@dataclass(frozen=True, slots=True)
class Delivery:
    """Every event of one webhook body, in the order Meta listed them."""

    events: tuple[Event, ...]
    # The gateway instance that posted it (web sessions): a registration's own, or refused.
    origin: str | None = None

    @property
    def phone_number_ids(self) -> frozenset[str]:
        return frozenset(e.route.phone_number_id for e in self.events if e.route.phone_number_id)
