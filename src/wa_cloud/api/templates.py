"""`/v1/templates`: a number's WABA templates over HTTP, as `wa-cloud templates` does from
files. The body of a PUT is a template file (Meta's create format), checked by the same rules
as `templates check` before Meta sees it; Meta's list is read fresh for each call."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from wa_cloud.api.auth import require_tenant
from wa_cloud.api.contacts import phone_number_param
from wa_cloud.asgi import read_object
from wa_cloud.db.queries import Q
from wa_cloud.errors import ApiError, Conflict, NotFound, Unprocessable
from wa_cloud.graph.errors import GraphError
from wa_cloud.outbox import template_sync
from wa_cloud.outbox.template_rules import check_template
from wa_cloud.outbox.templates import quality_of, rejection_of, save_templates
from wa_cloud.providers.cloud import CloudProvider
from wa_cloud.providers.numbers import request_providers
from wa_cloud.state import AppState


def _meta_refused(exc: GraphError) -> ApiError:
    if exc.retryable:
        return ApiError(503, "meta_unavailable", "Meta's Graph API is not answering; retry.")
    return ApiError(
        422,
        "meta_refused",
        f"Meta refused it (error {exc.code}): {exc.details or exc.message}",
        {"meta": exc.as_dict()},
    )


async def _account(
    request: Request, *, changes: bool = False
) -> tuple[AppState, CloudProvider, str]:
    state, caller = await require_tenant(request)
    if changes:
        caller.require_active()
    number_id = phone_number_param(request)
    async with state.pool.acquire() as conn:
        number = await conn.fetchrow(Q.sender_number, number_id, caller.tenant_id)
    if number is None:
        raise NotFound("No number with that phone_number_id is yours.")
    provider = request_providers(state.graph, state.tenant_http, state.box)(number)
    if not isinstance(provider, CloudProvider) or not provider.waba_id:
        raise Unprocessable(
            "This number is a web session: it has no templates.", "templates_unsupported"
        )
    return state, provider, provider.waba_id


async def fetch_templates(
    state: AppState, account: CloudProvider, waba_id: str
) -> list[dict[str, Any]]:
    """The WABA's templates as Meta has them now, saved over the ones we hold (the console's
    template picker fetches through here when it holds none)."""
    try:
        remote = await account.templates()
    except GraphError as exc:
        raise _meta_refused(exc) from exc
    async with state.pool.acquire() as conn:
        await save_templates(conn, waba_id, remote)
    return remote


def template_json(template: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": template.get("name"),
        "language": template.get("language"),
        "category": template.get("category"),
        "status": template.get("status"),
        "rejected_reason": rejection_of(template),
        "quality": quality_of(template),
        "id": template.get("id"),
    }


async def list_templates(request: Request) -> JSONResponse:
    state, account, waba_id = await _account(request)
    remote = await fetch_templates(state, account, waba_id)
    return JSONResponse({"data": [template_json(t) for t in remote]})


async def put_template(request: Request) -> JSONResponse:
    state, account, waba_id = await _account(request, changes=True)
    name = request.path_params["name"]
    body = await read_object(request)
    violations = check_template(body, file=name)
    if violations:
        raise ApiError(
            422,
            "template_invalid",
            f"The template breaks {len(violations)} of Meta's rules: {violations[0].message}",
            {
                "violations": [
                    {"component": v.component, "rule": v.rule, "message": v.message}
                    for v in violations
                ]
            },
        )
    if body.get("name") != name:
        raise Unprocessable("The body's 'name' must be the name in the path.", "invalid_field")
    remote = await fetch_templates(state, account, waba_id)
    (change,) = template_sync.plan([body], remote, prune=False)[:1]
    if change.action in ("needs_new_name", "wait"):
        code = (
            "template_needs_new_name" if change.action == "needs_new_name" else "template_in_review"
        )
        raise Conflict(f"Meta does not allow this change: {change.reason}.", code)
    (done,) = await template_sync.apply(account, [change])
    if done.result.startswith("refused"):
        raise ApiError(422, "meta_refused", done.result)
    status = (
        str(change.remote.get("status"))
        if change.action == "unchanged" and change.remote
        else "PENDING"
    )
    async with state.pool.acquire() as conn:
        await conn.execute(Q.forget_template, waba_id, name)  # fetched again on next use
    return JSONResponse(
        {"name": name, "language": change.language, "action": change.action, "status": status},
        status_code=201 if change.action == "create" else 200,
    )


async def delete_template(request: Request) -> JSONResponse:
    state, account, waba_id = await _account(request, changes=True)
    name = request.path_params["name"]
    language = request.query_params.get("language")
    remote = await fetch_templates(state, account, waba_id)
    doomed = [
        t
        for t in remote
        if t.get("name") == name and (not language or t.get("language") == language)
    ]
    if not doomed:
        raise NotFound("No template with that name on this number's WABA.")
    for template in doomed:
        try:
            await account.delete_template(name, str(template.get("id")))
        except GraphError as exc:
            raise _meta_refused(exc) from exc
    async with state.pool.acquire() as conn:
        await conn.execute(Q.forget_template, waba_id, name)
    return JSONResponse(
        {"name": name, "deleted": [str(t.get("language")) for t in doomed], "status": "DELETED"}
    )
