"""The sandbox application: Meta's Graph routes, the control API, and the lifespan that owns
the webhook HTTP client and the background tasks (status webhooks, template reviews)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from wa_cloud.sandbox import account, control, gateway, media, messages, models, templates
from wa_cloud.sandbox.config import SandboxConfig
from wa_cloud.sandbox.graph import graph
from wa_cloud.sandbox.state import SandboxState

V = "/{version}"

ROUTES = [
    # Control API first: its literal paths must win over the Graph patterns.
    Route("/_sandbox/numbers", control.control(control.add_number, 201), methods=["POST"]),
    Route("/_sandbox/numbers", control.control(control.list_numbers), methods=["GET"]),
    Route("/_sandbox/templates", control.control(control.add_template, 201), methods=["POST"]),
    Route("/_sandbox/templates/state", control.control(control.template_state), methods=["POST"]),
    Route("/_sandbox/numbers/quality", control.control(control.number_quality), methods=["POST"]),
    Route(
        "/_sandbox/user_preferences", control.control(control.user_preferences), methods=["POST"]
    ),
    Route("/_sandbox/codes", control.control(control.add_code, 201), methods=["POST"]),
    Route("/_sandbox/apps", control.control(control.add_app, 201), methods=["POST"]),
    Route("/_sandbox/inbound", control.control(control.inbound), methods=["POST"]),
    Route("/_sandbox/windows", control.control(control.open_window), methods=["POST"]),
    Route("/_sandbox/requests", control.control(control.list_requests), methods=["GET"]),
    Route("/_sandbox/requests", control.control(control.clear_requests), methods=["DELETE"]),
    Route("/_sandbox/stats", control.control(control.stats), methods=["GET"]),
    Route("/_sandbox/faults", control.control(control.add_fault, 201), methods=["POST"]),
    Route("/_sandbox/faults", control.control(control.clear_faults), methods=["DELETE"]),
    Route("/_sandbox/latency", control.control(control.add_latency, 201), methods=["POST"]),
    Route("/_sandbox/latency", control.control(control.clear_latency), methods=["DELETE"]),
    # The model fakes (OpenAI-compatible under /openai/v1, Gemini under /gemini; /_models/).
    *models.MODEL_ROUTES,
    *gateway.GATEWAY_ROUTES,
    # The media download URL handed out by GET /{media_id} (Meta's lives on lookaside.fbsbx.com).
    Route(media.DOWNLOAD_PATH, graph(media.download), methods=["GET"]),
    Route(
        V + "/oauth/access_token",
        graph(account.exchange_code, authenticated=False),
        methods=["GET"],
    ),
    Route(V + "/{phone_number_id}/messages", graph(messages.send), methods=["POST"]),
    Route(V + "/{phone_number_id}/media", graph(media.upload), methods=["POST"]),
    Route(V + "/{phone_number_id}/register", graph(account.register), methods=["POST"]),
    Route(V + "/{phone_number_id}/deregister", graph(account.deregister), methods=["POST"]),
    Route(V + "/{waba_id}/message_templates", graph(templates.list_templates), methods=["GET"]),
    Route(V + "/{waba_id}/message_templates", graph(templates.create_template), methods=["POST"]),
    Route(V + "/{waba_id}/message_templates", graph(templates.delete_template), methods=["DELETE"]),
    Route(V + "/{waba_id}/subscribed_apps", graph(account.subscribe_app), methods=["POST"]),
    Route(V + "/{waba_id}/subscribed_apps", graph(account.subscribed_apps), methods=["GET"]),
    Route(V + "/{waba_id}/subscribed_apps", graph(account.unsubscribe_app), methods=["DELETE"]),
    Route(V + "/{waba_id}/phone_numbers", graph(account.waba_numbers), methods=["GET"]),
    Route(V + "/{object_id}", graph(account.get_object), methods=["GET"]),
    Route(V + "/{object_id}", graph(account.post_object), methods=["POST"]),
    Route(V + "/{object_id}", graph(account.delete_object), methods=["DELETE"]),
]


def create_sandbox(config: SandboxConfig) -> Starlette:
    """A fresh, empty emulator of Meta's Graph API; its state is `app.state.sandbox` (the model
    fakes' is `app.state.models`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state: SandboxState = app.state.sandbox
        timeout = httpx.Timeout(config.webhook_timeout_seconds, connect=2.0)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
            state.http = http
            try:
                yield
            finally:
                # Pending status webhooks die with the sandbox, as they would with Meta's
                # delivery to a callback that went away.
                await state.cancel_tasks()
                await app.state.gateway.close()
                state.http = None

    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.state.sandbox = SandboxState.create(config)
    app.state.models = models.ModelState.create(config.request_log_limit)
    app.state.gateway = gateway.GatewayState()
    return app
