"""The Starlette application: routes table, error handlers and the lifespan that owns every
resource (pool, HTTP client, group committer, and the in-process worker when asked)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from wa_cloud.api import (
    admin,
    apps,
    bot,
    broadcasts,
    contacts,
    credits,
    events,
    files,
    followups,
    invites,
    media,
    messages,
    numbers,
    onboarding,
    openapi,
    ops,
)
from wa_cloud.api import templates as template_api
from wa_cloud.api import webhooks as tenant_webhooks
from wa_cloud.asgi import error_response
from wa_cloud.config import Settings
from wa_cloud.console import routes as console_routes
from wa_cloud.console.live import LiveHub
from wa_cloud.db import channels
from wa_cloud.db.announce import Announcer
from wa_cloud.db.pool import create_pool
from wa_cloud.errors import ApiError, DatabaseUnavailable, RateLimited
from wa_cloud.inbound import routes as webhooks
from wa_cloud.inbound.receiver import WebhookReceiver
from wa_cloud.inbound.store import delivery_store
from wa_cloud.pages import status
from wa_cloud.ratelimit import FailedLookups, KeyRateLimiter
from wa_cloud.resources import open_resources
from wa_cloud.routing import resource
from wa_cloud.state import AppState
from wa_cloud.worker import Worker

logger = logging.getLogger(__name__)

# How long a request waits for a pooled connection before it is a 503: a pool that stays busy
# this long is overloaded, and queueing more only makes every caller late.
API_ACQUIRE_TIMEOUT_SECONDS = 5.0
INGEST_ACQUIRE_TIMEOUT_SECONDS = 3.0


ROUTES = [
    # POSTs to these two paths are taken before the router by receiver.WebhookReceiver.
    resource("/webhook", GET=webhooks.platform_verify),
    resource("/webhook/apps/{app_id}", GET=webhooks.app_verify),
    resource("/healthz", GET=ops.healthz),
    resource("/readyz", GET=ops.readyz),
    resource("/metrics", GET=ops.metrics),
    resource("/openapi.json", GET=openapi.spec),
    resource("/t/{token}", GET=status.status_page),
    resource("/v1/admin/tenants", POST=admin.create_tenant, GET=admin.list_tenants),
    resource(
        "/v1/admin/tenants/{tenant_id}",
        GET=admin.get_tenant,
        PATCH=admin.update_tenant,
        DELETE=admin.delete_tenant,
    ),
    resource("/v1/admin/tenants/{tenant_id}/keys", POST=admin.create_key, GET=admin.list_keys),
    resource("/v1/admin/tenants/{tenant_id}/keys/{key_id}", DELETE=admin.revoke_key),
    resource("/v1/admin/tenants/{tenant_id}/invite", POST=invites.invite_tenant),
    resource("/v1/admin/tenants/{tenant_id}/credits", POST=credits.add_credits),
    resource("/v1/admin/events", GET=events.list_all_events),
    resource("/v1/numbers", POST=numbers.create_number, GET=numbers.list_numbers),
    resource(
        "/v1/numbers/{phone_number_id}",
        GET=numbers.get_number,
        PATCH=numbers.update_number,
        DELETE=numbers.delete_number,
    ),
    resource("/v1/numbers/{phone_number_id}/bot", GET=bot.get_bot, PUT=bot.put_bot),
    resource("/v1/numbers/{phone_number_id}/tool-calls", GET=bot.list_tool_calls),
    resource("/v1/numbers/{phone_number_id}/files", POST=files.add_file, GET=files.list_files),
    resource("/v1/numbers/{phone_number_id}/files/{file_id}", DELETE=files.delete_file),
    resource("/v1/numbers/{phone_number_id}/qr", GET=numbers.number_qr),
    resource("/v1/onboarding/embedded-signup", POST=onboarding.embedded_signup),
    resource("/v1/apps", POST=apps.create_app, GET=apps.list_apps),
    resource("/v1/apps/{app_id}", PUT=apps.update_app, DELETE=apps.delete_app),
    resource("/v1/messages", POST=messages.send_message),
    resource("/v1/messages/{message_id}", GET=messages.get_message),
    resource("/v1/media", POST=media.upload_media),
    resource("/v1/media/{media_id}", GET=media.get_media),
    resource("/v1/contacts", GET=contacts.list_contacts),
    resource("/v1/contacts/{contact}", GET=contacts.get_contact, PATCH=contacts.update_contact),
    resource("/v1/events", GET=events.list_events),
    resource("/v1/contacts/{contact}/messages", GET=contacts.contact_messages),
    resource("/v1/contacts/{contact}/pause", POST=contacts.pause_contact),
    resource("/v1/contacts/{contact}/resume", POST=contacts.resume_contact),
    resource("/v1/contacts/{contact}/follow-ups", GET=followups.list_follow_ups),
    resource("/v1/contacts/{contact}/follow-ups/{follow_up_id}", DELETE=followups.cancel_follow_up),
    resource("/v1/contacts/{contact}/reminders", POST=followups.create_reminder),
    resource("/v1/usage", GET=credits.usage),
    resource(
        "/v1/webhooks",
        PUT=tenant_webhooks.put_webhook,
        GET=tenant_webhooks.get_webhook,
        DELETE=tenant_webhooks.delete_webhook,
    ),
    resource("/v1/webhooks/deliveries", GET=tenant_webhooks.list_deliveries),
    resource("/v1/broadcasts", POST=broadcasts.create_broadcast, GET=broadcasts.list_broadcasts),
    resource("/v1/broadcasts/{broadcast_id}", GET=broadcasts.get_broadcast),
    resource("/v1/broadcasts/{broadcast_id}/recipients.csv", GET=broadcasts.recipients_csv),
    resource("/v1/broadcasts/{broadcast_id}/{action}", POST=broadcasts.change_broadcast),
    resource("/v1/opt-outs", GET=broadcasts.list_opt_outs, POST=broadcasts.add_opt_out),
    resource("/v1/opt-outs/{to}", DELETE=broadcasts.remove_opt_out),
    resource("/v1/templates", GET=template_api.list_templates),
    resource(
        "/v1/templates/{name}", PUT=template_api.put_template, DELETE=template_api.delete_template
    ),
]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = error_response(exc.status, exc.code, exc.message, exc.extra)
    if isinstance(exc, RateLimited):
        response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not the caller's fault: the JSON shape still holds and the log has the details.
    logger.exception("unhandled error", extra={"path": request.url.path})
    return error_response(500, "internal_error", "Something went wrong on our side.")


async def _database_down(request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable", extra={"path": request.url.path})
    return error_response(503, "database_unavailable", "The database is not reachable; retry.")


def create_app(settings: Settings, *, run_worker: bool = False) -> WebhookReceiver:
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url")
    if not settings.secret_key:
        raise ValueError("create_app needs settings.secret_key")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, AppState]]:
        assert settings.database_url
        async with contextlib.AsyncExitStack() as stack:
            resources = await stack.enter_async_context(
                open_resources(
                    settings,
                    pool_size=settings.db_pool_size,
                    acquire_timeout=API_ACQUIRE_TIMEOUT_SECONDS,
                    name="wa-cloud serve",
                )
            )
            # Webhook ingest's own connections: API traffic never starves it.
            ingest_pool = await create_pool(
                settings.database_url,
                max_size=settings.ingest_pool_size,
                acquire_timeout=INGEST_ACQUIRE_TIMEOUT_SECONDS,
                name="wa-cloud ingest",
            )
            stack.push_async_callback(ingest_pool.close)
            deliveries = await stack.enter_async_context(delivery_store(ingest_pool))
            outbox = await stack.enter_async_context(Announcer(resources.pool, channels.OUTBOX))
            state = AppState(
                settings=settings,
                pool=resources.pool,
                ingest_pool=ingest_pool,
                tenant_http=resources.tenant_http,
                graph=resources.graph,
                deliveries=deliveries,
                outbox=outbox,
                box=resources.box,
                metrics=resources.metrics,
                key_rates=KeyRateLimiter(settings.api_rate_per_second, settings.api_rate_burst),
                failed_lookups=FailedLookups(
                    settings.api_rate_per_second / 2.5, settings.api_rate_burst // 2
                ),
            )
            state.live = LiveHub(settings.database_url)
            stack.push_async_callback(state.live.aclose)
            if run_worker:
                worker = await stack.enter_async_context(Worker(resources))
                state.worker_health = worker.health
            yield {"wa": state}

    starlette = Starlette(
        routes=[*ROUTES, *console_routes.ROUTES],
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            DatabaseUnavailable: _database_down,
            asyncpg.PostgresConnectionError: _database_down,
            asyncpg.CannotConnectNowError: _database_down,
            ConnectionError: _database_down,
            TimeoutError: _database_down,
            Exception: _unexpected,
        },
    )
    return WebhookReceiver(starlette)
