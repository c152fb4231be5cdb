"""Message templates: the WABA's template endpoints, approval, and checking a template send
against the stored template (existence, status, parameter counts)."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

from wa_cloud.sandbox import payloads, webhooks
from wa_cloud.sandbox.errors import GraphError, bad_param
from wa_cloud.sandbox.graph import GraphRequest
from wa_cloud.sandbox.state import Number, SandboxState, Template, new_id

CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
MAX_PER_WABA = 250
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_NAME = re.compile(r"[a-z0-9_]{1,512}")
MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT", "LOCATION")


def placeholders(text: str) -> list[str]:
    """The distinct `{{n}}` / `{{name}}` variables of a component text, in order."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(text)))


def _component(components: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    for component in components:
        if str(component.get("type", "")).upper() == kind:
            return component
    return None


def _parameters(components: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    sent = _component(components, kind)
    if sent is None:
        return []
    params = sent.get("parameters", [])
    return [p for p in params if isinstance(p, dict)] if isinstance(params, list) else []


def _check_count(
    template: Template, part: str, expected: list[str], given: list[dict[str, Any]]
) -> None:
    if len(given) != len(expected):
        raise GraphError(
            132000,
            f"{part}: number of localizable_params ({len(given)}) does not match the expected "
            f"number of params ({len(expected)})",
        )
    if template.parameter_format == "NAMED":
        names = {str(p.get("parameter_name")) for p in given}
        if names != set(expected):
            raise GraphError(
                132000,
                f"{part}: parameter names {sorted(names)} do not match the template's "
                f"{sorted(expected)}",
            )


def check_send(state: SandboxState, number: Number, obj: dict[str, Any]) -> Template:
    """The approved template a send names, or Meta's 132xxx error."""
    name = obj["name"]
    language = obj["language"]["code"]
    template = state.find_template(number.waba_id, name, language)
    if template is None:
        raise GraphError(132001, f"template name ({name}) does not exist in {language}")
    if template.status == "PAUSED":
        raise GraphError(132015, f"Template {name} is paused.")
    if template.status == "DISABLED":
        raise GraphError(132016, f"Template {name} is disabled.")
    if template.status != "APPROVED":
        raise GraphError(
            132001,
            f"template name ({name}) does not exist in {language} (status {template.status})",
        )
    sent = obj.get("components", [])
    body = _component(template.components, "BODY")
    _check_count(
        template, "body", placeholders(str((body or {}).get("text", ""))), _parameters(sent, "BODY")
    )
    header = _component(template.components, "HEADER")
    if header is not None:
        fmt = str(header.get("format", "TEXT")).upper()
        given = _parameters(sent, "HEADER")
        if fmt == "TEXT":
            _check_count(template, "header", placeholders(str(header.get("text", ""))), given)
        elif fmt in MEDIA_FORMATS:
            received = str(given[0].get("type", "UNKNOWN")).upper() if given else "UNKNOWN"
            if received != fmt:
                raise GraphError(
                    132012, f"header: Format mismatch, expected {fmt}, received {received}"
                )
    return template


# --- endpoints --------------------------------------------------------------------------


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(str(index).encode()).decode().rstrip("=")


def _index(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise bad_param("Param after is not a valid cursor.") from None


async def list_templates(req: GraphRequest) -> dict[str, Any]:
    waba_id = req.waba(req.param("waba_id"))
    query = req.query
    try:
        limit = max(1, min(int(query.get("limit", "25")), 1000))
    except ValueError:
        raise bad_param("Param limit must be an integer.") from None
    chosen = [
        t
        for t in req.state.templates.values()
        if t.waba_id == waba_id
        and (not query.get("name") or query["name"] in t.name)
        and (not query.get("status") or t.status == query["status"].upper())
        and (not query.get("language") or t.language == query["language"])
    ]
    start = _index(query["after"]) + 1 if query.get("after") else 0
    page = chosen[start : start + limit]
    fields = [f for f in query.get("fields", "").split(",") if f]
    data = [
        {k: v for k, v in t.as_json().items() if not fields or k in fields or k == "id"}
        for t in page
    ]
    result: dict[str, Any] = {"data": data}
    if page:
        last = start + len(page) - 1
        result["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
        if last + 1 < len(chosen):
            base = str(req.request.base_url).rstrip("/")
            version = req.state.config.graph_version
            result["paging"]["next"] = (
                f"{base}/{version}/{waba_id}/message_templates?limit={limit}&after={_cursor(last)}"
            )
    return result


def _validate_new(req: GraphRequest, waba_id: str, body: dict[str, Any]) -> Template:
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise bad_param("Param name must be lowercase letters, digits and underscores.")
    language = body.get("language")
    if not isinstance(language, str) or not language:
        raise bad_param("The parameter language is required.")
    category = str(body.get("category", "")).upper()
    if category not in CATEGORIES:
        raise bad_param(f"Param category must be one of {{{', '.join(CATEGORIES)}}}.")
    components = body.get("components")
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise bad_param("The parameter components is required.")
    if category != "AUTHENTICATION" and _component(components, "BODY") is None:
        raise bad_param("A template needs a BODY component.")
    parameter_format = str(body.get("parameter_format", "POSITIONAL")).upper()
    if parameter_format not in ("POSITIONAL", "NAMED"):
        raise bad_param("Param parameter_format must be POSITIONAL or NAMED.")
    if req.state.find_template(waba_id, name, language) is not None:
        raise GraphError(100, "Content in this language already exists.", subcode=2388024)
    if sum(t.waba_id == waba_id for t in req.state.templates.values()) >= MAX_PER_WABA:
        raise GraphError(100, f"A WABA may hold at most {MAX_PER_WABA} message templates.")
    return Template(
        id=new_id(),
        waba_id=waba_id,
        name=name,
        language=language,
        category=category,
        components=components,
        parameter_format=parameter_format,
        status="PENDING",
    )


async def _approve_later(state: SandboxState, template: Template, delay: float) -> None:
    await asyncio.sleep(delay)
    if state.templates.get(template.id) is not template or template.status != "PENDING":
        return
    template.status = "APPROVED"
    webhooks.post(
        state, template.waba_id, payloads.template_status(template, "APPROVED", int(state.now()))
    )


async def create_template(req: GraphRequest) -> dict[str, Any]:
    waba_id = req.waba(req.param("waba_id"))
    template = _validate_new(req, waba_id, req.body())
    req.state.templates[template.id] = template
    delay = req.state.config.template_approval_delay
    if delay is not None:
        req.state.spawn(_approve_later(req.state, template, delay))
    return {"id": template.id, "status": template.status, "category": template.category}


async def delete_template(req: GraphRequest) -> dict[str, Any]:
    waba_id = req.waba(req.param("waba_id"))
    name = req.query.get("name")
    hsm_id = req.query.get("hsm_id")
    if not name:
        raise bad_param("The parameter name is required.")
    doomed = [
        t.id
        for t in req.state.templates.values()
        if t.waba_id == waba_id and t.name == name and (not hsm_id or t.id == hsm_id)
    ]
    if not doomed:
        raise GraphError(100, f"Message template {name!r} was not found.")
    for template_id in doomed:
        del req.state.templates[template_id]
    return {"success": True}
