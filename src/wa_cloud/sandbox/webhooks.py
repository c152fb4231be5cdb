"""Posting webhooks like Meta: signed over the exact bytes sent, retried a few times, then
dropped with a log line. Duplicates are injected here when the config asks for them."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from wa_cloud.inbound.signature import sign
from wa_cloud.sandbox.state import SandboxState

logger = logging.getLogger(__name__)


def target(state: SandboxState, waba_id: str) -> str | None:
    subscription = state.subscriptions.get(waba_id)
    if subscription is not None and subscription.override_callback_uri:
        return subscription.override_callback_uri
    return state.config.webhook_url


def encode(payload: dict[str, Any]) -> bytes:
    # Non-ASCII goes out as UTF-8 and the signature covers these bytes; the receiver also
    # accepts Meta's escaped-unicode variant, which this sandbox does not produce.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def deliver(state: SandboxState, url: str, body: bytes) -> int | None:
    """POST once with retries; the final HTTP status, or None when every attempt failed."""
    if state.http is None:
        return None
    config = state.config
    headers = {
        "content-type": "application/json",
        "x-hub-signature-256": sign(body, config.app_secret),
        "user-agent": "facebookexternalua",
    }
    outcome: str = "not attempted"
    for attempt in range(config.webhook_attempts):
        if attempt:
            await asyncio.sleep(config.webhook_retry_seconds * 2 ** (attempt - 1))
        try:
            response = await state.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            continue
        if 200 <= response.status_code < 300:
            return response.status_code
        outcome = str(response.status_code)
    logger.warning(
        "sandbox webhook dropped",
        extra={"url": url, "attempts": config.webhook_attempts, "outcome": outcome},
    )
    return None


async def _post_later(
    state: SandboxState, url: str, body: bytes, delay: float, copies: int
) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    for _ in range(copies):
        await deliver(state, url, body)


def post(state: SandboxState, waba_id: str, payload: dict[str, Any], delay: float = 0.0) -> None:
    """Post `payload` for `waba_id` in the background after `delay` seconds."""
    url = target(state, waba_id)
    if url is None or state.http is None:
        return
    copies = 2 if state.rng.random() < state.config.duplicate_probability else 1
    state.spawn(_post_later(state, url, encode(payload), delay, copies))
