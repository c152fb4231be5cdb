"""Everything the sandbox remembers, in one object kept on `app.state.sandbox`."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from wa_cloud.sandbox.config import SandboxConfig
from wa_cloud.sandbox.rules import Gcra, throughput_limiter

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class NumberStats:
    accepted: int = 0
    throughput_rejected: int = 0  # 130429
    pair_rejected: int = 0  # 131056
    faults: int = 0
    first_accept_at: float | None = None
    last_accept_at: float | None = None

    def accept(self, now: float) -> None:
        self.accepted += 1
        if self.first_accept_at is None:
            self.first_accept_at = now
        self.last_accept_at = now

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "throughput_rejected": self.throughput_rejected,
            "pair_rate_rejected": self.pair_rejected,
            "faults": self.faults,
            "first_accept_at": self.first_accept_at,
            "last_accept_at": self.last_accept_at,
        }


@dataclass(slots=True)
class Number:
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    verified_name: str
    throughput_mps: int
    limiter: Gcra
    pin: str | None = field(default=None, repr=False)
    registered: bool = False
    quality_rating: str = "GREEN"
    # Meta's messaging limit (business-initiated conversations per 24 h), TIER_50 .. TIER_UNLIMITED.
    messaging_limit_tier: str = "TIER_1K"
    name_status: str = "APPROVED"
    code_verification_status: str = "VERIFIED"
    stats: NumberStats = field(default_factory=NumberStats)

    def set_throughput(self, mps: int) -> None:
        self.throughput_mps = mps
        self.limiter = throughput_limiter(mps)

    @property
    def digits(self) -> str:
        return "".join(c for c in self.display_phone_number if c.isdigit())


@dataclass(slots=True)
class Grant:
    """What one access token may address. A number's own token reaches that number and its
    WABA's management endpoints; a token from a code exchanged for a WABA reaches all of it."""

    numbers: set[str] = field(default_factory=set)
    wabas: set[str] = field(default_factory=set)
    whole_wabas: set[str] = field(default_factory=set)
    # An app access token (`{app_id}|{app_secret}`) reads that app's own node.
    app_id: str | None = None

    def covers_number(self, number: Number) -> bool:
        return number.phone_number_id in self.numbers or number.waba_id in self.whole_wabas

    def covers_waba(self, waba_id: str) -> bool:
        return waba_id in self.wabas or waba_id in self.whole_wabas


@dataclass(slots=True)
class Template:
    id: str
    waba_id: str
    name: str
    language: str
    category: str
    components: list[dict[str, Any]]
    parameter_format: str = "POSITIONAL"
    status: str = "APPROVED"
    # Meta's `rejected_reason` (NONE unless REJECTED) and `quality_score` (UNKNOWN when new).
    rejected_reason: str = "NONE"
    quality_score: str = "UNKNOWN"
    quality_date: int = field(default_factory=lambda: int(time.time()))
    # When edits of the APPROVED template were made (epoch seconds): Meta limits those.
    approved_edits: list[float] = field(default_factory=list)
    # Bumped by every submission (create, edit): a review scheduled for an older one is void.
    review_round: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parameter_format": self.parameter_format,
            "components": self.components,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "rejected_reason": self.rejected_reason,
            "quality_score": {"score": self.quality_score, "date": self.quality_date},
            "id": self.id,
        }


@dataclass(slots=True)
class Media:
    id: str
    phone_number_id: str
    mime_type: str
    sha256: str
    data: bytes = field(repr=False)
    filename: str | None = None

    @property
    def file_size(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class CodeGrant:
    access_token: str = field(repr=False)
    waba_id: str | None = None
    used: bool = False


@dataclass(slots=True)
class Fault:
    phone_number_id: str | None
    code: int | None
    http_status: int | None
    remaining: int
    delay_seconds: float | None
    on: str = "messages"  # the Graph call it fails: a send ("messages") or an upload ("media")


@dataclass(slots=True)
class Subscription:
    override_callback_uri: str | None = None
    verify_token: str | None = field(default=None, repr=False)


def new_id() -> str:
    """A numeric Graph-style object id (media, templates)."""
    return str(uuid.uuid4().int % 10**16 + 10**15)


def new_wamid() -> str:
    return "wamid.HBgL" + secrets.token_urlsafe(33).replace("-", "A").replace("_", "B")


@dataclass(slots=True)
class SandboxState:
    config: SandboxConfig
    rng: random.Random
    numbers: dict[str, Number] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict, repr=False)
    templates: dict[str, Template] = field(default_factory=dict)
    media: dict[str, Media] = field(default_factory=dict)
    codes: dict[str, CodeGrant] = field(default_factory=dict, repr=False)
    # (phone_number_id, user wa_id or user_id) -> epoch seconds of the user's last message.
    windows: dict[tuple[str, str], float] = field(default_factory=dict)
    pair_limits: dict[tuple[str, str], Gcra] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    app_names: dict[str, str] = field(default_factory=dict)
    # Path fragment -> seconds every matching Graph request waits before it is answered.
    latencies: dict[str, float] = field(default_factory=dict)
    requests: deque[dict[str, Any]] = field(default_factory=deque)
    # Signs media download URLs so a URL cannot be forged or extended.
    url_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    # Opened and closed by the lifespan; None outside it (nothing is posted then).
    http: httpx.AsyncClient | None = field(default=None, repr=False)

    @classmethod
    def create(cls, config: SandboxConfig) -> SandboxState:
        return cls(
            config=config,
            rng=random.Random(config.seed),
            requests=deque(maxlen=config.request_log_limit),
        )

    # --- numbers and tokens -------------------------------------------------------------

    def grant(self, token: str) -> Grant:
        return self.tokens.setdefault(token, Grant())

    def add_number(self, number: Number, token: str) -> None:
        self.numbers[number.phone_number_id] = number
        grant = self.grant(token)
        grant.numbers.add(number.phone_number_id)
        grant.wabas.add(number.waba_id)

    def add_app(self, app_id: str, app_secret: str, name: str) -> None:
        """A Meta app: its app access token is `{app_id}|{app_secret}`."""
        for token, grant in list(self.tokens.items()):
            if grant.app_id == app_id:
                del self.tokens[token]  # a new secret retires the old app token
        self.grant(f"{app_id}|{app_secret}").app_id = app_id
        self.app_names[app_id] = name

    def waba_numbers(self, waba_id: str) -> list[Number]:
        return [n for n in self.numbers.values() if n.waba_id == waba_id]

    def waba_exists(self, waba_id: str) -> bool:
        return any(n.waba_id == waba_id for n in self.numbers.values()) or any(
            waba_id in g.whole_wabas for g in self.tokens.values()
        )

    # --- rules --------------------------------------------------------------------------

    def pair_limiter(self, phone_number_id: str, user: str) -> Gcra:
        key = (phone_number_id, user)
        limiter = self.pair_limits.get(key)
        if limiter is None:
            limiter = Gcra(self.config.pair_interval_seconds, self.config.pair_burst)
            self.pair_limits[key] = limiter
        return limiter

    def last_inbound(self, phone_number_id: str, user: str) -> float | None:
        return self.windows.get((phone_number_id, user))

    def take_fault(self, phone_number_id: str, on: str = "messages") -> Fault | None:
        for fault in self.faults:
            if fault.on == on and fault.phone_number_id in (None, phone_number_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def find_template(self, waba_id: str, name: str, language: str) -> Template | None:
        for template in self.templates.values():
            if (template.waba_id, template.name, template.language) == (waba_id, name, language):
                return template
        return None

    # --- background work ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the background; the lifespan cancels what is left at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("sandbox background task failed", exc_info=task.exception())

    async def cancel_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def now(self) -> float:
        return time.time()
