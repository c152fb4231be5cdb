"""The OpenAPI document: valid, complete (every route, nothing else), and true of the handlers.

The last part is schemathesis: cases generated from the document served by the running app
(web and worker, with the sandbox Meta behind it) go to every operation over loopback, with
the admin token or a tenant's API key as each operation's security says, in positive and
negative modes. No answer may be a 5xx, have an undocumented status or content type, or
break the schema documented for its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit
from uuid import UUID

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Meta, Running
from wa_cloud.api.openapi import DOCUMENT, HTTP_METHODS, described_operations
from wa_cloud.api.webhooks import STATES
from wa_cloud.app import ROUTES
from wa_cloud.forwarding.events import EVENTS
from wa_cloud.media.rules import MEDIA_KINDS
from wa_cloud.outbox.compose import SEND_TYPES
from wa_cloud.tenants.links import make_token

# Served by receiver.WebhookReceiver in front of the router, so they are not in ROUTES.
RECEIVER_OPERATIONS = {
    ("POST", "/webhook"),
    ("POST", "/webhook/apps/{app_id}"),
    ("POST", "/webhook/websession/{phone_number_id}"),
}
# Only Meta (or the gateway) can sign these: generated bodies would all be (correctly) refused.
NOT_FUZZED = RECEIVER_OPERATIONS
CUSTOMER = "16505551234"
# Cases per operation: what the document says is valid, and what it says is not (bad types,
# missing fields, no credentials...). Bounded so that the whole file runs in about a minute.
EXAMPLES = {GenerationMode.POSITIVE: 16, GenerationMode.NEGATIVE: 8}

# Open handler bugs this file found, each reproduced exactly by a strict xfail below. While one
# is open, schemathesis 5xx on its operations xfail the fuzz test rather than fail it; anything
# else it finds still fails. Fixing a bug turns its xfail into an XPASS (strict: a failure):
# then delete it here and drop the test's xfail mark (it stays as the regression test).
OPEN_BUGS: dict[str, str] = {}
SERVER_ERROR_TITLES = {"Server error", "Undocumented status code"}


# The document ---------------------------------------------------------------------------------
def route_operations() -> set[tuple[str, str]]:
    found = set()
    for route in ROUTES:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                found.add((method, route.path))
    return found


def test_every_route_is_described_and_nothing_else() -> None:
    served = route_operations() | RECEIVER_OPERATIONS
    described = set(described_operations())
    assert len(described) == len(described_operations()), "an operation is listed twice"
    undescribed = sorted(served - described)
    assert not undescribed, (
        f"route(s) {undescribed} are not in the OpenAPI document: describe them in "
        "src/wa_cloud/api/openapi/paths/ (request body, every response and its schema)"
    )
    stale = sorted(described - served)
    assert not stale, f"the OpenAPI document describes operations no route serves: {stale}"


async def test_receiver_operations_are_served(web: Running) -> None:
    """The two POSTs the document describes beside ROUTES really are answered."""
    client = web.client
    assert (await client.post("/webhook", content=b"{}")).status_code == 401
    # An unknown app id answers as a missing signature would (which apps we serve is ours).
    assert (await client.post("/webhook/apps/1234567", content=b"{}")).status_code == 401
    assert (await client.post("/webhook/apps/not-digits", content=b"{}")).status_code == 404


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(pointer: str) -> Any:
    assert pointer.startswith("#/"), f"only local references: {pointer}"
    node: Any = DOCUMENT
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"dangling $ref {pointer}"
        node = node[part]
    return node


def _schemas() -> Iterator[tuple[str, Any]]:
    """Every JSON Schema in the document, with where it is."""
    components = DOCUMENT["components"]
    for name, schema in components["schemas"].items():
        yield f"components/schemas/{name}", schema
    for name, parameter in components["parameters"].items():
        yield f"components/parameters/{name}", parameter["schema"]
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            for parameter in op.get("parameters", []):
                if "schema" in parameter:
                    yield f"{method} {path} {parameter['name']}", parameter["schema"]
            for media_type, content in op.get("requestBody", {}).get("content", {}).items():
                yield f"{method} {path} body {media_type}", content["schema"]
            for status, response in op["responses"].items():
                for media_type, content in response.get("content", {}).items():
                    yield f"{method} {path} {status} {media_type}", content["schema"]


def test_document_is_valid_openapi_3_1() -> None:
    assert re.fullmatch(r"3\.1\.\d+", DOCUMENT["openapi"])
    assert DOCUMENT["info"]["title"] and DOCUMENT["info"]["version"]
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert set(schemes) == {"admin", "tenant"}
    assert all(s == {**s, "type": "http", "scheme": "bearer"} for s in schemes.values())
    tags = {tag["name"] for tag in DOCUMENT["tags"]}
    operation_ids: list[str] = []
    for pointer in set(_refs(DOCUMENT)):
        _resolve(pointer)
    for path, item in DOCUMENT["paths"].items():
        assert path.startswith("/"), path
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            if method not in HTTP_METHODS:
                assert method == "parameters", f"{path}: unknown key {method!r}"
                continue
            where = f"{method.upper()} {path}"
            operation_ids.append(op["operationId"])
            assert op["summary"], where
            assert set(op["tags"]) <= tags, where
            for requirement in op["security"]:
                assert set(requirement) <= set(schemes), where
            parameters = [
                _resolve(p["$ref"]) if "$ref" in p else p
                for p in [*item.get("parameters", []), *op.get("parameters", [])]
            ]
            in_path = {p["name"] for p in parameters if p["in"] == "path"}
            assert in_path == templated, f"{where}: path parameters {in_path} vs {templated}"
            assert all(p["required"] for p in parameters if p["in"] == "path"), where
            assert all(p["in"] in {"path", "query", "header", "cookie"} for p in parameters)
            assert op["responses"], where
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5][0-9]{2}", status), f"{where}: status {status}"
                response = _resolve(response["$ref"]) if "$ref" in response else response
                assert response["description"], f"{where} {status}"
                if int(status) >= 400:  # every error is the one JSON error shape
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, f"{where} {status}"
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    # Every schema is JSON Schema 2020-12 (OpenAPI 3.1's dialect), and compiles with its refs
    # resolved (patterns are valid regular expressions, references point somewhere).
    for where, schema in _schemas():
        assert jsonschema_rs.meta.is_valid(schema), f"{where}: not a valid JSON Schema"
        jsonschema_rs.Draft202012Validator({"components": DOCUMENT["components"], **schema})


def test_document_passes_the_openapi_3_1_meta_schema() -> None:
    """The official OpenAPI 3.1 schema, as schemathesis ships it (not a public module of its
    own: skipped if a schemathesis release moves it)."""
    try:
        from schemathesis.specs.openapi.definitions import OPENAPI_31
    except ImportError:  # pragma: no cover - depends on the schemathesis release
        pytest.skip("this schemathesis release does not ship the OpenAPI 3.1 schema there")
    errors = [str(e) for e in jsonschema_rs.Draft202012Validator(OPENAPI_31).iter_errors(DOCUMENT)]
    assert not errors, errors[:5]


def test_document_enums_are_the_code_s() -> None:
    """Lists the document spells out by hand, checked against the code that decides them."""
    schemas = DOCUMENT["components"]["schemas"]
    send_types = schemas["NewMessage"]["properties"]["type"]["enum"]
    assert set(send_types) == SEND_TYPES
    assert set(schemas["MediaFromUrl"]["properties"]["type"]["enum"]) == MEDIA_KINDS
    assert set(schemas["MediaUpload"]["properties"]["type"]["enum"]) == MEDIA_KINDS
    assert tuple(schemas["Delivery"]["properties"]["event"]["enum"]) == EVENTS
    assert tuple(schemas["Delivery"]["properties"]["state"]["enum"]) == STATES


async def test_served_document_is_the_document(web: Running) -> None:
    response = await web.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DOCUMENT


# Schemathesis -----------------------------------------------------------------------------------
@dataclass
class World:
    """The running app and ids that exist in it, so that generated cases reach past the 404s."""

    base_url: str
    admin_token: str
    api_key: str
    sink_url: str  # anything the app fetches or forwards to goes here, never off the machine
    path: dict[str, str]
    query: dict[str, str]
    body: dict[str, str]
    # Per operation, ids that replace `path`'s (e.g. a number of its own to delete).
    path_for: dict[tuple[str, str], dict[str, str]]
    # Per operation, body fields beside `body`'s (e.g. the number a contact is paused on).
    body_for: dict[tuple[str, str], dict[str, str]]

    def use_known_ids(self, case: schemathesis.Case) -> None:
        operation = (case.operation.method.upper(), case.operation.path)
        for container, known in (
            (case.path_parameters, {**self.path, **self.path_for.get(operation, {})}),
            (case.query, self.query),
            (case.body, {**self.body, **self.body_for.get(operation, {})}),
        ):
            if isinstance(container, dict):
                for name in known.keys() & container.keys():
                    container[name] = known[name]

    def keep_fetches_local(self, case: schemathesis.Case) -> None:
        """A media URL is fetched and a webhook URL is posted to: point them at the sink."""
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("url"), str):
            parts = urlsplit(body["url"])
            if parts.scheme in ("http", "https") and parts.hostname:
                body["url"] = f"{self.sink_url}/{quote(parts.path.lstrip('/'))}"


@pytest.fixture
async def world(meta: Meta) -> World:
    app, client = meta.app, meta.app.client
    tenant = meta.tenant()
    await meta.customer_writes("hello", sender=CUSTOMER)  # a contact with an open window
    sent = await meta.send(to=CUSTOMER, type="text", text={"body": "hi"})
    assert sent.status_code == 202, sent.text
    # A second number, the one DELETE /v1/numbers/{id} may remove.
    seeded = await meta.sandbox.post(
        "/_sandbox/numbers",
        json={
            "phone_number_id": NUMBER_B,
            "waba_id": WABA,
            "access_token": "EAAG-test-token-" + NUMBER_B,
            "display_phone_number": "15550783882",
        },
    )
    assert seeded.status_code == 201, seeded.text
    added = await app.add_number(meta.api_key, NUMBER_B)
    assert added.status_code == 201, added.text
    # What admin operations may change, with an address to invite.
    created = await client.post(
        "/v1/admin/tenants",
        json={"name": "Playground", "email": "owner@playground.example"},
        headers=app.admin(),
    )
    assert created.status_code == 201, created.text
    other = created.json()
    keys = await client.get(f"/v1/admin/tenants/{other['id']}/keys", headers=app.admin())
    await app.seed_app("777000111", "own-secret")
    own_app = await client.post(
        "/v1/apps",
        json={"app_id": "777000111", "app_secret": "own-secret", "verify_token": "own-verify"},
        headers=tenant,
    )
    assert own_app.status_code == 201, own_app.text
    assert app.settings.admin_token
    return World(
        base_url=app.base_url,
        admin_token=app.settings.admin_token,
        api_key=meta.api_key,
        sink_url=str(meta.sandbox.base_url).rstrip("/") + "/_sink",
        path={
            "phone_number_id": NUMBER_A,
            "contact": CUSTOMER,
            "message_id": sent.json()["id"],
            "tenant_id": other["id"],
            "key_id": keys.json()["data"][0]["id"],
            "app_id": "777000111",
            "token": make_token(app.settings, UUID(other["id"])),
        },
        query={"phone_number_id": NUMBER_A, "tenant_id": other["id"]},
        body={"from": NUMBER_A, "to": CUSTOMER},
        path_for={("DELETE", "/v1/numbers/{phone_number_id}"): {"phone_number_id": NUMBER_B}},
        body_for={
            ("POST", f"/v1/contacts/{{contact}}/{action}"): {"phone_number_id": NUMBER_A}
            for action in ("pause", "resume")
        },
    )


def load_schema(world: World) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "auth": {
                "openapi": {
                    "admin": {"bearer": world.admin_token},
                    "tenant": {"bearer": world.api_key},
                },
                "auto-signup": False,
            },
            "checks": {
                "enabled": False,
                "not_a_server_error": {"enabled": True},
                "status_code_conformance": {"enabled": True},
                "content_type_conformance": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
            },
            "request-timeout": 30,
        }
    )
    return schemathesis.openapi.from_url(f"{world.base_url}/openapi.json", config=config)


def fuzz(world: World) -> dict[str, str]:
    """Every operation in each mode; the first example of each distinct problem, by key."""
    schema = load_schema(world)
    problems: dict[str, str] = {}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if (operation.method.upper(), operation.path) in NOT_FUZZED:
                continue
            for mode, examples in EXAMPLES.items():
                test = _operation_test(world, session, operation, mode, examples, problems)
                with contextlib.suppress(Unsatisfiable):  # e.g. nothing there to make invalid
                    test()
    return problems


def _operation_test(
    world: World,
    session: requests.Session,
    operation: Any,
    mode: GenerationMode,
    examples: int,
    problems: dict[str, str],
) -> Callable[[], None]:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same cases on every run
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the case as found
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    # Three cases in four use ids that exist: random ones only ever meet a 404.
    @given(case=operation.as_strategy(generation_mode=mode), known_ids=st.integers(0, 3))
    def test(case: schemathesis.Case, known_ids: int) -> None:
        if known_ids:
            world.use_known_ids(case)
        world.keep_fetches_local(case)
        try:
            case.call_and_validate(base_url=world.base_url, session=session)
        except FailureGroup as group:
            titles = sorted({failure.title for failure in group.exceptions})
            key = f"{operation.label} [{mode.value}]: {', '.join(titles)}"
            problems.setdefault(key, str(group))
        except requests.RequestException as exc:
            problems.setdefault(f"{operation.label}: {type(exc).__name__}", repr(exc))

    return test


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(world: World) -> None:
    # Schemathesis is synchronous: it runs in a thread while the server serves on this loop.
    problems = await asyncio.to_thread(fuzz, world)
    report = "\n\n".join(f"=== {key}\n{detail}" for key, detail in sorted(problems.items()))
    known = {_open_bug(key) for key in problems}
    if problems and None not in known:
        pytest.xfail(f"only open bugs: {sorted(problems)}")
    assert not problems, f"{len(problems)} problem(s):\n{report}"


def _open_bug(problem: str) -> str | None:
    """The open bug a problem is an instance of: a 5xx on an operation with an open 5xx bug."""
    label, _, rest = problem.partition(" [")
    titles = set(rest.partition("]: ")[2].split(", "))
    if label in OPEN_BUGS and "Server error" in titles and titles <= SERVER_ERROR_TITLES:
        return OPEN_BUGS[label]
    return None


# The bugs, exactly ------------------------------------------------------------------------------
def _documented_problem(method: str, template: str, status: int, response: Any) -> str | None:
    """Why an answer breaks the document (status, content type, schema), or None."""
    if status >= 500 and status != 503:
        return f"a server error: {status} {response.text[:200]!r}"
    responses = DOCUMENT["paths"][template][method.lower()]["responses"]
    documented = responses.get(str(status))
    if documented is None:
        return f"status {status} is not documented ({sorted(responses)})"
    if "$ref" in documented:
        documented = _resolve(documented["$ref"])
    content_type = response.headers.get("content-type", "").split(";")[0]
    media = documented.get("content", {})
    if media and content_type not in media and "*/*" not in media:
        return f"content type {content_type!r} is not documented for {status}"
    if content_type == "application/json" and content_type in media:
        validator = jsonschema_rs.Draft202012Validator(
            {"components": DOCUMENT["components"], **media[content_type]["schema"]}
        )
        errors = [str(e) for e in validator.iter_errors(response.json())]
        if errors:
            return f"{status} body breaks its schema: {errors[:3]}"
    return None


Case = tuple[str, str, str, dict[str, Any], bool, int]


async def _answers(meta: Meta, cases: list[Case]) -> list[str]:
    """Send each (method, url, documented path, json, as tenant, expected status) case; what
    broke the document or was not the expected answer."""
    found = []
    for method, url, template, body, as_tenant, expected in cases:
        response = await meta.app.client.request(
            method,
            url,
            json=body or None,
            headers=meta.tenant() if as_tenant else {},
        )
        problem = _documented_problem(method, template, response.status_code, response)
        if problem is None and response.status_code != expected:
            problem = f"{response.status_code}, not {expected}: {response.text[:200]!r}"
        if problem:
            found.append(f"{method} {url} {body}: {problem}")
    return found


async def test_number_with_a_token_unfit_for_a_header_is_refused(meta: Meta) -> None:
    """Found by schemathesis: such a token was a 500 (UnicodeEncodeError building the Graph
    request's Authorization header), or a 503 after retries for a control character."""
    cases: list[Case] = [
        (
            "POST",
            "/v1/numbers",
            "/v1/numbers",
            {"phone_number_id": "1234567", "waba_id": WABA, "access_token": token},
            True,
            422,
        )
        for token in ("EAAG-tökén", "EAAG\rX-Injected: 1")
    ]
    problems = await _answers(meta, cases)
    assert not problems, problems


async def test_send_with_a_nul_is_refused(meta: Meta) -> None:
    """Found by schemathesis: a NUL in any string of a send was a 500 (PostgreSQL text and
    jsonb cannot hold one)."""
    await meta.customer_writes("hello", sender=CUSTOMER)  # the window is open
    text = {"from": NUMBER_A, "to": CUSTOMER, "type": "text", "text": {"body": "hi"}}
    template = {"name": "a\u0000b", "language": {"code": "en_US"}}
    bodies = [
        {**text, "text": {"body": "hi\u0000"}},
        {**text, "text": {"body": "hi", "extra": "\u0000"}},
        {**text, "from": "\u0000"},
        {**text, "idempotency_key": "key\u0000"},
        {**text, "type": "template", "text": None, "template": template},
    ]
    cases = [("POST", "/v1/messages", "/v1/messages", body, True, 422) for body in bodies]
    problems = await _answers(meta, cases)
    assert not problems, problems


async def test_a_nul_in_a_path_parameter_is_not_found(meta: Meta) -> None:
    number, contact, app = (
        "/v1/numbers/{phone_number_id}",
        "/v1/contacts/{contact}/messages",
        "/webhook/apps/{app_id}",
    )
    cases: list[Case] = [
        ("GET", "/v1/numbers/%00", number, {}, True, 404),
        ("PATCH", "/v1/numbers/%00", number, {"bot_enabled": True}, True, 404),
        ("DELETE", "/v1/numbers/%00", number, {}, True, 404),
        ("GET", f"/v1/contacts/%00/messages?phone_number_id={NUMBER_A}", contact, {}, True, 404),
        ("GET", "/webhook/apps/%00?hub.mode=subscribe", app, {}, False, 404),
        ("POST", "/webhook/apps/%00", app, {"object": "whatsapp_business_account"}, False, 404),
    ]
    problems = await _answers(meta, cases)
    assert not problems, problems
