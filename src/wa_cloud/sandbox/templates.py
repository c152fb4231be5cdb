"""Message templates: the WABA's template endpoints, review by rule (APPROVED or REJECTED with
Meta's reason), edits, and checking a template send against the stored template (existence,
status, parameter counts)."""

from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import dataclass
from typing import Any

from wa_cloud.sandbox import payloads, webhooks
from wa_cloud.sandbox.config import SandboxConfig
from wa_cloud.sandbox.errors import GraphError, bad_param
from wa_cloud.sandbox.graph import GraphRequest
from wa_cloud.sandbox.state import Number, SandboxState, Template, new_id

CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
# What a template's status can be set to (the control API); Meta has a few more.
STATUSES = ("APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL", "ARCHIVED")
# Meta's `rejected_reason` / webhook `reason` values.
REASONS = (
    "NONE",
    "INVALID_FORMAT",
    "TAG_CONTENT_MISMATCH",
    "ABUSIVE_CONTENT",
    "PROMOTIONAL",
    "INCORRECT_CATEGORY",
    "SCAM",
    "CATEGORY_NOT_AVAILABLE",
)
QUALITY_SCORES = ("GREEN", "YELLOW", "RED", "UNKNOWN")
# Meta edits only these; a PENDING one is under review, a DISABLED one is gone for good.
EDITABLE = ("APPROVED", "REJECTED", "PAUSED")
MAX_PER_WABA = 250
THIRTY_DAYS = 30 * 86_400.0
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_NAME = re.compile(r"[a-z0-9_]{1,512}")
MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
# Words that make a UTILITY template promotional (INCORRECT_CATEGORY); whole words, any case.
_PROMOTIONAL = re.compile(
    r"%\s*off\b|\b(?:sales?|discounts?|discounted|offers?|promo(?:tion)?s?|coupons?|deals?"
    r"|black friday|buy now)\b",
    re.IGNORECASE,
)
_EDGE = re.compile(r"^\{\{\s*[A-Za-z0-9_]+\s*\}\}|\{\{\s*[A-Za-z0-9_]+\s*\}\}$")


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


def _pick(template: Template, asked: str | None) -> dict[str, Any]:
    fields = [f.strip() for f in (asked or "").split(",") if f.strip()]
    return {k: v for k, v in template.as_json().items() if not fields or k in fields or k == "id"}


def describe(req: GraphRequest, template: Template) -> dict[str, Any]:
    """`GET /{template_id}`: the node, as in the list (with `fields` honoured)."""
    req.waba(template.waba_id)
    return _pick(template, req.query.get("fields"))


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
        and (not query.get("category") or t.category in query["category"].upper().split(","))
        and (
            not query.get("quality_score")
            or t.quality_score in query["quality_score"].upper().split(",")
        )
    ]
    start = _index(query["after"]) + 1 if query.get("after") else 0
    page = chosen[start : start + limit]
    data = [_pick(t, query.get("fields")) for t in page]
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


def _components(components: Any, category: str) -> list[dict[str, Any]]:
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise bad_param("The parameter components is required.")
    if category != "AUTHENTICATION" and _component(components, "BODY") is None:
        raise bad_param("A template needs a BODY component.")
    return components


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
    components = _components(body.get("components"), category)
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


@dataclass(frozen=True, slots=True)
class Verdict:
    """What review decides: `reason` NONE approves; INVALID_FORMAT carries Meta's
    `rejection_info` (what is wrong, what to do)."""

    reason: str = "NONE"
    info: str | None = None
    recommendation: str | None = None


def _texts(components: list[dict[str, Any]]) -> list[str]:
    """Every text a reviewer reads: component texts and button labels."""
    texts: list[str] = []
    for component in components:
        if isinstance(component.get("text"), str):
            texts.append(component["text"])
        buttons = component.get("buttons")
        if isinstance(buttons, list):
            texts.extend(str(b["text"]) for b in buttons if isinstance(b, dict) and "text" in b)
    return texts


def _format_problem(template: Template, body: str, config: SandboxConfig) -> str | None:
    names = placeholders(body)
    if not names:
        return None
    if not re.search(r"\w", _PLACEHOLDER.sub("", body)):
        return "The body has only variables and no text."
    if template.parameter_format == "POSITIONAL" and set(names) != {
        str(n) for n in range(1, len(names) + 1)
    }:
        return "Variables must be numbered {{1}}, {{2}}, ... without gaps."
    if config.template_reject_edge_placeholders and _EDGE.search(body.strip()):
        return "Variables can't be at the start or end of the template."
    return None


def review(template: Template, config: SandboxConfig) -> Verdict:
    """Meta's review, by deterministic rules, first match wins: a banned word (ABUSIVE_CONTENT),
    a malformed body (INVALID_FORMAT), a promotional UTILITY template (INCORRECT_CATEGORY)."""
    everything = "\n".join(_texts(template.components))
    for word in filter(None, config.template_banned_words):
        # Lookarounds, not \b: a word may begin or end with a non-word character ("f*ck").
        if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", everything, re.IGNORECASE):
            return Verdict("ABUSIVE_CONTENT")
    body = str((_component(template.components, "BODY") or {}).get("text", ""))
    problem = _format_problem(template, body, config)
    if problem is not None:
        return Verdict(
            "INVALID_FORMAT",
            problem,
            "Write text around each variable and number variables from {{1}} in order.",
        )
    if template.category == "UTILITY" and _PROMOTIONAL.search(everything):
        return Verdict("INCORRECT_CATEGORY")
    return Verdict()


def submit(state: SandboxState, template: Template) -> None:
    """Put `template` under review: PENDING now, decided after `template_approval_delay`."""
    template.status = "PENDING"
    template.rejected_reason = "NONE"
    template.review_round += 1
    delay = state.config.template_approval_delay
    if delay is not None:
        state.spawn(_review_later(state, template, template.review_round, delay))


async def _review_later(state: SandboxState, template: Template, round_: int, delay: float) -> None:
    await asyncio.sleep(delay)
    if (
        state.templates.get(template.id) is not template
        or template.review_round != round_
        or template.status != "PENDING"
    ):
        return  # deleted, edited again, or decided by the control API meanwhile
    verdict = review(template, state.config)
    at = int(state.now())
    if verdict.reason == "NONE":
        template.status = "APPROVED"
        payload = payloads.template_status(template, "APPROVED", at)
    else:
        template.status = "REJECTED"
        template.rejected_reason = verdict.reason
        extra = None
        if verdict.info is not None:
            extra = {
                "rejection_info": {"reason": verdict.info, "recommendation": verdict.recommendation}
            }
        payload = payloads.template_status(template, "REJECTED", at, verdict.reason, extra=extra)
    webhooks.post(state, template.waba_id, payload)


async def create_template(req: GraphRequest) -> dict[str, Any]:
    waba_id = req.waba(req.param("waba_id"))
    template = _validate_new(req, waba_id, req.body())
    req.state.templates[template.id] = template
    submit(req.state, template)
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


def _edit_refused(details: str) -> GraphError:
    return GraphError(100, details, message=f"(#100) {details}")


def _count_edit(state: SandboxState, template: Template) -> None:
    """Meta's limits on editing an APPROVED template: one edit per 24 h, ten per 30 days."""
    now = state.now()
    config = state.config
    recent = [t for t in template.approved_edits if now - t < THIRTY_DAYS]
    if recent and now - max(recent) < config.template_edit_interval_seconds:
        raise _edit_refused(
            "An approved message template can be edited only once in 24 hours; try again later."
        )
    if len(recent) >= config.template_edits_per_30_days:
        raise _edit_refused(
            f"An approved message template can be edited at most "
            f"{config.template_edits_per_30_days} times in 30 days."
        )
    template.approved_edits = [*recent, now]


async def edit_template(req: GraphRequest, template: Template) -> dict[str, Any]:
    """`POST /{template_id}` with `components` and/or `category`: back to PENDING and reviewed
    again. The edit limit is checked last, so a refused edit never uses one up."""
    req.waba(template.waba_id)
    body = req.body()
    for key, current in (("name", template.name), ("language", template.language)):
        if key in body and body[key] != current:
            raise _edit_refused(
                f"A message template's {key} can't be changed; create a new template instead."
            )
    if template.status not in EDITABLE:
        raise _edit_refused(
            f"Only APPROVED, REJECTED or PAUSED message templates can be edited; this one is "
            f"{template.status}."
        )
    if body.get("components") is None and body.get("category") is None:
        raise bad_param("The parameter components or category is required.")
    category = template.category
    if body.get("category") is not None:
        category = str(body["category"]).upper()
        if category not in CATEGORIES:
            raise bad_param(f"Param category must be one of {{{', '.join(CATEGORIES)}}}.")
        if template.status == "APPROVED" and category != template.category:
            raise _edit_refused("The category of an approved message template can't be changed.")
    components = template.components
    if body.get("components") is not None:
        components = _components(body["components"], category)
    if template.status == "APPROVED":
        _count_edit(req.state, template)
    template.category = category
    template.components = components
    submit(req.state, template)
    return {"success": True}


def set_status(
    state: SandboxState,
    template: Template,
    status: str,
    reason: str | None,
    *,
    event: str | None = None,
    title: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Decide a template as Meta would on its own (pause, disable, reject, reinstate); the
    `message_template_status_update` to post. Any review still pending is void."""
    template.status = status
    template.review_round += 1
    template.rejected_reason = (reason or "NONE") if status == "REJECTED" else "NONE"
    at = int(state.now())
    extra: dict[str, Any] = {}
    if status == "DISABLED":
        extra["disable_info"] = {"disable_date": at}
    if status == "PAUSED" or title is not None:
        paused = status == "PAUSED"
        extra["other_info"] = {
            "title": title or "FIRST_PAUSE",
            "description": description
            or f"Your WhatsApp message template has been {'paused' if paused else 'unpaused'}.",
        }
    return payloads.template_status(
        template, event or status, at, reason or "NONE", extra=extra or None
    )


def set_quality(state: SandboxState, template: Template, score: str) -> dict[str, Any] | None:
    """The `message_template_quality_update` for a new score; None when it did not change."""
    previous = template.quality_score
    at = int(state.now())
    template.quality_score = score
    template.quality_date = at
    if previous == score:
        return None
    return payloads.template_quality(template, previous, score, at)
