"""The admin and tenant HTTP API: shapes, auth, validation, pagination and conflicts."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Running, corpus, wait_idle

OTHER_WABA = "102290129349999"  # a second tenant's own WABA: claims never overlap by accident
NUMBER_FIELDS = {
    "phone_number_id",
    "waba_id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "name_status",
    "code_verification_status",
    "throughput_level",
    "registered",
    "app_id",
    "provider",
    "bot_enabled",
    "throughput_mps",
    "created_at",
}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def text_columns(db: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public'
              AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')
            ORDER BY table_name, column_name"""
    )
    return [(r["table_name"], r["column_name"], r["data_type"]) for r in rows]


async def columns_containing(db: asyncpg.Connection, needle: str) -> list[str]:
    """Every `table.column` of the database whose stored value contains `needle`."""
    found = []
    for table, column, kind in await text_columns(db):
        expr = f'"{column}"' if kind != "bytea" else f"encode(\"{column}\", 'escape')"
        if kind in ("jsonb", "json"):
            expr = f'"{column}"::text'
        hits = await db.fetchval(
            f'SELECT count(*) FROM "{table}" WHERE strpos({expr}, $1) > 0', needle
        )
        if kind == "bytea":
            hits += await db.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE position($1::bytea IN "{column}") > 0',
                needle.encode(),
            )
        if hits:
            found.append(f"{table}.{column}")
    return found


# --- admin: tenants -------------------------------------------------------------------------


async def test_create_tenant_shape_and_key_stored_only_as_sha256(
    web: Running, db: asyncpg.Connection
) -> None:
    response = await web.client.post(
        "/v1/admin/tenants",
        json={"name": "Acme Ltd", "email": "ops@acme.example"},
        headers=web.admin(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert {"id", "name", "email", "active", "api_key"} <= set(body)
    assert body["name"] == "Acme Ltd"
    assert body["email"] == "ops@acme.example"
    assert body["active"] is True
    uuid.UUID(body["id"])
    key = body["api_key"]
    assert key.startswith("wak_") and len(key) >= 40

    row = await db.fetchrow("SELECT id, name, email, active FROM tenants")
    assert (str(row["id"]), row["name"], row["email"], row["active"]) == (
        body["id"],
        "Acme Ltd",
        "ops@acme.example",
        True,
    )
    keys = await db.fetch("SELECT tenant_id, key_hash, prefix, revoked_at FROM api_keys")
    assert len(keys) == 1
    assert str(keys[0]["tenant_id"]) == body["id"]
    assert bytes(keys[0]["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert keys[0]["revoked_at"] is None
    assert len(keys[0]["prefix"]) < len(key)
    assert await columns_containing(db, key) == []
    # The key works once created: it authenticates the tenant routes.
    listed = await web.client.get("/v1/numbers", headers=bearer(key))
    assert listed.status_code == 200
    assert listed.json() == {"data": [], "next": None}


async def test_create_tenant_without_email(web: Running, db: asyncpg.Connection) -> None:
    response = await web.client.post(
        "/v1/admin/tenants", json={"name": "  Trimmed  "}, headers=web.admin()
    )
    assert response.status_code == 201, response.text
    assert response.json()["email"] is None
    assert response.json()["name"] == "Trimmed"
    assert await db.fetchval("SELECT email FROM tenants") is None


async def test_list_tenants_walks_every_page_without_duplicates(
    web: Running, db: asyncpg.Connection
) -> None:
    created = [await web.create_tenant(f"Tenant {i}") for i in range(5)]
    seen: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        params = {"limit": "2"} if cursor is None else {"limit": "2", "cursor": cursor}
        response = await web.client.get("/v1/admin/tenants", params=params, headers=web.admin())
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "next"}
        assert len(body["data"]) <= 2
        seen += body["data"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not end"
    assert pages == 3
    assert [len(p) for p in (seen[:2], seen[2:4], seen[4:])] == [2, 2, 1]
    ids = [t["id"] for t in seen]
    assert len(ids) == len(set(ids)) == 5
    assert set(ids) == {t["id"] for t in created}
    # Newest first.
    assert [t["name"] for t in seen] == [f"Tenant {i}" for i in reversed(range(5))]
    for tenant in seen:
        assert "api_key" not in tenant
    assert await db.fetchval("SELECT count(*) FROM tenants") == 5


async def test_list_tenants_rejects_bad_limit_and_cursor(web: Running) -> None:
    for params, code in (
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "abc"}, "invalid_limit"),
        ({"limit": "201"}, "invalid_limit"),
        ({"cursor": "not-a-cursor!"}, "invalid_cursor"),
        ({"cursor": "WzFd"}, "invalid_cursor"),  # base64 of [1]: wrong arity
    ):
        response = await web.client.get("/v1/admin/tenants", params=params, headers=web.admin())
        assert_error(response, 400, code)


async def test_get_tenant(web: Running) -> None:
    created = await web.create_tenant("Lookup Inc")
    response = await web.client.get(f"/v1/admin/tenants/{created['id']}", headers=web.admin())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == created["id"]
    assert body["name"] == "Lookup Inc"
    assert body["active"] is True
    assert "api_key" not in body


async def test_get_tenant_unknown_or_malformed_id_is_404(web: Running) -> None:
    await web.create_tenant()
    for tenant_id in (str(uuid.uuid4()), "not-a-uuid", "1234"):
        response = await web.client.get(f"/v1/admin/tenants/{tenant_id}", headers=web.admin())
        assert_error(response, 404, "not_found")


# --- admin: authentication ------------------------------------------------------------------


async def test_admin_routes_need_the_admin_token(web: Running, db: asyncpg.Connection) -> None:
    tenant = await web.create_tenant()
    calls = [
        ("POST", "/v1/admin/tenants", {"name": "Intruder"}),
        ("GET", "/v1/admin/tenants", None),
        ("GET", f"/v1/admin/tenants/{tenant['id']}", None),
    ]
    headers_cases: list[dict[str, str]] = [
        {},
        bearer("adm_wrong-token"),
        bearer(tenant["api_key"]),
        {"authorization": f"Basic {web.settings.admin_token}"},
        {"authorization": "Bearer"},
        {"authorization": web.settings.admin_token or ""},
    ]
    for method, path, body in calls:
        for headers in headers_cases:
            response = await web.client.request(method, path, json=body, headers=headers)
            assert_error(response, 401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM tenants") == 1


async def test_tenant_routes_refuse_admin_token_and_unknown_keys(web: Running) -> None:
    for headers in ({}, bearer(web.settings.admin_token or ""), bearer("wak_" + "x" * 43)):
        response = await web.client.get("/v1/numbers", headers=headers)
        assert_error(response, 401, "unauthorized")


# --- validation -----------------------------------------------------------------------------


async def test_non_json_body_is_400(web: Running, db: asyncpg.Connection) -> None:
    for raw in (b"name=Acme", b'{"name": "Acme"', b"\xff\xfe", b""):
        response = await web.client.post(
            "/v1/admin/tenants",
            content=raw,
            headers={**web.admin(), "content-type": "application/json"},
        )
        assert_error(response, 400, "invalid_json")
    assert await db.fetchval("SELECT count(*) FROM tenants") == 0


async def test_json_that_is_not_an_object_is_422(web: Running, db: asyncpg.Connection) -> None:
    for document in ([{"name": "Acme"}], "Acme", 42, None):
        response = await web.client.post(
            "/v1/admin/tenants", content=json.dumps(document), headers=web.admin()
        )
        assert_error(response, 422, "validation_error")
    assert await db.fetchval("SELECT count(*) FROM tenants") == 0


async def test_missing_or_bad_name_is_422(web: Running, db: asyncpg.Connection) -> None:
    response = await web.client.post(
        "/v1/admin/tenants", json={"email": "a@b.example"}, headers=web.admin()
    )
    assert_error(response, 422, "missing_field")
    assert "name" in response.json()["error"]["message"]
    for name in ("", "   ", 7, ["Acme"], "x" * 201):
        response = await web.client.post(
            "/v1/admin/tenants", json={"name": name}, headers=web.admin()
        )
        assert_error(response, 422, "invalid_field")
    assert await db.fetchval("SELECT count(*) FROM tenants") == 0


async def test_unknown_field_is_422(web: Running, db: asyncpg.Connection) -> None:
    response = await web.client.post(
        "/v1/admin/tenants", json={"name": "Acme", "plan": "gold"}, headers=web.admin()
    )
    assert_error(response, 422, "unknown_field")
    assert "plan" in response.json()["error"]["message"]
    assert await db.fetchval("SELECT count(*) FROM tenants") == 0


async def test_body_over_1_mib_is_413(web: Running, db: asyncpg.Connection) -> None:
    body = json.dumps({"name": "Acme", "pad": "x" * (1024 * 1024)}).encode()
    response = await web.client.post("/v1/admin/tenants", content=body, headers=web.admin())
    assert_error(response, 413, "payload_too_large")

    async def chunks():  # no Content-Length: the limit holds while streaming too
        yield b'{"name": "Acme", "pad": "'
        for _ in range(2):
            yield b"x" * (600 * 1024)
        yield b'"}'

    response = await web.client.post("/v1/admin/tenants", content=chunks(), headers=web.admin())
    assert_error(response, 413, "payload_too_large")
    assert await db.fetchval("SELECT count(*) FROM tenants") == 0


async def test_body_just_under_1_mib_is_accepted_by_the_size_check(web: Running) -> None:
    # Under the limit the body is read and judged on its content (here: an unknown field).
    pad = "x" * (1024 * 1024 - 100)
    body = json.dumps({"name": "Acme", "pad": pad}).encode()
    assert len(body) <= 1024 * 1024
    response = await web.client.post("/v1/admin/tenants", content=body, headers=web.admin())
    assert_error(response, 422, "unknown_field")


# --- tenant: numbers ------------------------------------------------------------------------


async def test_create_number_shape_never_shows_the_token(
    web: Running, db: asyncpg.Connection
) -> None:
    tenant = await web.create_tenant()
    response = await web.add_number(
        tenant["api_key"], NUMBER_A, display_phone_number="15550783881", pin="654321"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == NUMBER_FIELDS
    assert body["phone_number_id"] == NUMBER_A
    assert body["waba_id"] == WABA
    assert body["display_phone_number"] == "15550783881"
    assert body["provider"] == "cloud"
    assert body["bot_enabled"] is False  # the assistant is off until configured or switched on
    assert body["throughput_mps"] == 80
    assert body["app_id"] is None
    for word in ("token", "pin", "secret"):
        assert not any(word in key for key in body), body
    assert "EAAG-test-token" not in response.text
    assert "654321" not in response.text

    row = await db.fetchrow(
        "SELECT tenant_id, waba_id, access_token_enc, pin_enc FROM numbers"
        " WHERE phone_number_id = $1",
        NUMBER_A,
    )
    assert str(row["tenant_id"]) == tenant["id"]
    assert row["waba_id"] == WABA
    assert row["access_token_enc"] is not None and row["pin_enc"] is not None
    assert b"EAAG-test-token" not in bytes(row["access_token_enc"])
    assert b"654321" not in bytes(row["pin_enc"])


async def test_create_number_accepts_numeric_ids(web: Running, db: asyncpg.Connection) -> None:
    tenant = await web.create_tenant()
    await web.seed_number(NUMBER_A, WABA, token="EAAG-x")
    response = await web.client.post(
        "/v1/numbers",
        json={"phone_number_id": int(NUMBER_A), "waba_id": int(WABA), "access_token": "EAAG-x"},
        headers=bearer(tenant["api_key"]),
    )
    assert response.status_code == 201, response.text
    assert response.json()["phone_number_id"] == NUMBER_A
    assert await db.fetchval("SELECT phone_number_id FROM numbers") == NUMBER_A


async def test_duplicate_number_is_409_for_owner_and_others(
    web: Running, db: asyncpg.Connection
) -> None:
    owner = await web.create_tenant("Owner")
    other = await web.create_tenant("Other")
    assert (await web.add_number(owner["api_key"], NUMBER_A)).status_code == 201
    before = await db.fetchrow("SELECT * FROM numbers WHERE phone_number_id = $1", NUMBER_A)

    again = await web.add_number(owner["api_key"], NUMBER_A)
    assert_error(again, 409, "number_exists")
    stolen = await web.add_number(
        other["api_key"], NUMBER_A, OTHER_WABA, access_token="EAAG-hijack"
    )
    # Meta is asked before anything is told: a token Meta refuses learns nothing about us.
    assert stolen.status_code == 422, stolen.text
    assert stolen.json()["error"]["code"] == "meta_token_invalid"
    assert "exists" not in stolen.text and "registered" not in stolen.text
    asked = await web.sandbox.get("/_sandbox/requests", params={"path_contains": NUMBER_A})
    assert any(r["path"].endswith(NUMBER_A) for r in asked.json()["data"])

    rows = await db.fetch("SELECT * FROM numbers")
    assert len(rows) == 1
    assert dict(rows[0]) == dict(before)  # owner, token and everything else unchanged
    assert str(rows[0]["tenant_id"]) == owner["id"]
    listed = await web.client.get("/v1/numbers", headers=bearer(other["api_key"]))
    assert listed.json() == {"data": [], "next": None}


async def test_pin_must_be_six_digits(web: Running, db: asyncpg.Connection) -> None:
    tenant = await web.create_tenant()
    for pin in ("12345", "1234567", "12a456", "", "      ", 123456):
        response = await web.add_number(tenant["api_key"], NUMBER_A, pin=pin)
        assert_error(response, 422, "invalid_field")
        assert "pin" in response.json()["error"]["message"]
    assert await db.fetchval("SELECT count(*) FROM numbers") == 0


async def test_number_field_rules(web: Running, db: asyncpg.Connection) -> None:
    tenant = await web.create_tenant()
    key = tenant["api_key"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"waba_id": WABA, "access_token": "t"}, "missing_field"),
        ({"phone_number_id": NUMBER_A, "access_token": "t"}, "missing_field"),
        ({"phone_number_id": NUMBER_A, "waba_id": WABA}, "missing_field"),
        ({"phone_number_id": "+1 555", "waba_id": WABA, "access_token": "t"}, "invalid_field"),
        ({"phone_number_id": NUMBER_A, "waba_id": "abc", "access_token": "t"}, "invalid_field"),
        (
            {"phone_number_id": NUMBER_A, "waba_id": WABA, "access_token": "t", "provider": "x"},
            "invalid_field",
        ),
        (
            {"phone_number_id": NUMBER_A, "waba_id": WABA, "access_token": "t", "token": "t"},
            "unknown_field",
        ),
    ]
    for body, code in cases:
        response = await web.client.post("/v1/numbers", json=body, headers=bearer(key))
        assert_error(response, 422, code)
    assert await db.fetchval("SELECT count(*) FROM numbers") == 0


async def test_unknown_app_id_is_422(web: Running, db: asyncpg.Connection) -> None:
    tenant = await web.create_tenant()
    response = await web.add_number(tenant["api_key"], NUMBER_A, app_id="2000000000000002")
    assert_error(response, 422, "unknown_app")
    assert await db.fetchval("SELECT count(*) FROM numbers") == 0

    await web.seed_app("2000000000000002", "s3cret")
    created = await web.client.post(
        "/v1/apps",
        json={"app_id": "2000000000000002", "app_secret": "s3cret", "verify_token": "vt"},
        headers=bearer(tenant["api_key"]),
    )
    assert created.status_code == 201, created.text
    response = await web.add_number(tenant["api_key"], NUMBER_A, app_id="2000000000000002")
    assert response.status_code == 201, response.text
    assert response.json()["app_id"] == "2000000000000002"
    assert await db.fetchval("SELECT app_id FROM numbers") == "2000000000000002"


async def test_list_numbers_shows_only_own_numbers(web: Running) -> None:
    first = await web.create_tenant("First")
    second = await web.create_tenant("Second")
    assert (await web.add_number(first["api_key"], NUMBER_A)).status_code == 201
    assert (await web.add_number(second["api_key"], NUMBER_B, OTHER_WABA)).status_code == 201
    extra = "106540352242999"
    assert (await web.add_number(first["api_key"], extra)).status_code == 201

    mine = await web.client.get("/v1/numbers", headers=bearer(first["api_key"]))
    assert mine.status_code == 200
    assert mine.json()["next"] is None
    assert [n["phone_number_id"] for n in mine.json()["data"]] == [NUMBER_A, extra]
    for number in mine.json()["data"]:
        assert set(number) == NUMBER_FIELDS

    theirs = await web.client.get("/v1/numbers", headers=bearer(second["api_key"]))
    assert [n["phone_number_id"] for n in theirs.json()["data"]] == [NUMBER_B]


# --- routing errors -------------------------------------------------------------------------


async def test_unknown_route_is_404_json(web: Running) -> None:
    for path in ("/nope", "/v1/admin/tenantz", "/v1/numbers/x/y/z"):
        response = await web.client.get(path, headers=web.admin())
        assert_error(response, 404, "not_found")


async def test_wrong_method_is_405_json(web: Running) -> None:
    for method, path in (
        ("DELETE", "/v1/admin/tenants"),
        ("PUT", "/v1/numbers"),
        ("POST", "/healthz"),
        ("DELETE", "/webhook"),
    ):
        response = await web.client.request(method, path, headers=web.admin())
        assert_error(response, 405, "method_not_allowed")


async def test_405_names_the_allowed_methods(web: Running) -> None:
    response = await web.client.request("DELETE", "/v1/numbers", headers=web.admin())
    assert_error(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
    assert {"GET", "POST"} <= allowed


# --- hostile input must get a 4xx JSON error, never a 500 -------------------------------------


def cursor_of(*values: Any) -> str:
    """A cursor in the API's own encoding (url-safe base64 of a JSON list), with any content."""
    text = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_tampered_tenants_cursor_is_400(web: Running) -> None:
    for values in (
        ("2026-11-22T00:00:00+00:00", "not-a-uuid"),
        ("2026-11-22T00:00:00+00:00", 5),
        (None, "not-a-uuid"),
    ):
        response = await web.client.get(
            "/v1/admin/tenants", params={"cursor": cursor_of(*values)}, headers=web.admin()
        )
        assert_error(response, 400, "invalid_cursor")


async def test_tampered_contact_cursors_are_400(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    assert (await app.post_webhook(corpus("messages/text.json"))).status_code == 200
    await wait_idle(db)
    auth = bearer(tenant["api_key"])
    listed = await app.client.get(
        "/v1/contacts", params={"phone_number_id": NUMBER_A}, headers=auth
    )
    assert [c["wa_id"] for c in listed.json()["data"]] == ["16505551234"]

    messages = await app.client.get(
        "/v1/contacts/16505551234/messages",
        params={
            "phone_number_id": NUMBER_A,
            "cursor": cursor_of("2026-11-22T00:00:00+00:00", "not-a-uuid"),
        },
        headers=auth,
    )
    assert_error(messages, 400, "invalid_cursor")
    contacts = await app.client.get(
        "/v1/contacts",
        params={"phone_number_id": NUMBER_A, "cursor": cursor_of(10**30)},
        headers=auth,
    )
    assert_error(contacts, 400, "invalid_cursor")


async def test_limit_with_a_non_ascii_digit_is_400(web: Running) -> None:
    response = await web.client.get("/v1/admin/tenants", params={"limit": "²"}, headers=web.admin())
    assert_error(response, 400, "invalid_limit")


async def test_limit_of_thousands_of_digits_is_400(web: Running) -> None:
    response = await web.client.get(
        "/v1/admin/tenants", params={"limit": "9" * 5000}, headers=web.admin()
    )
    assert_error(response, 400, "invalid_limit")


async def test_deeply_nested_json_is_a_4xx(web: Running, db: asyncpg.Connection) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    response = await web.client.post("/v1/admin/tenants", content=body, headers=web.admin())
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("invalid_json", "validation_error")
    assert await db.fetchval("SELECT count(*) FROM tenants") == 0


async def test_nul_character_in_a_field_is_422(web: Running, db: asyncpg.Connection) -> None:
    response = await web.client.post(
        "/v1/admin/tenants", json={"name": "Acme\u0000Corp"}, headers=web.admin()
    )
    assert_error(response, 422, "invalid_field")
    assert await db.fetchval("SELECT count(*) FROM tenants") == 0


async def test_nul_character_in_a_query_parameter_is_not_a_500(web: Running) -> None:
    tenant = await web.create_tenant()
    response = await web.client.get(
        "/v1/contacts",
        params={"phone_number_id": "1065\u00004035"},
        headers=bearer(tenant["api_key"]),
    )
    assert response.status_code < 500, response.text
    body = response.json()
    assert body == {"data": [], "next": None} or body["error"]["code"] in (
        "invalid_field",
        "bad_request",
    )


async def test_only_ascii_digits_are_digits(web: Running, db: asyncpg.Connection) -> None:
    tenant = await web.create_tenant()
    arabic_number = "".join(chr(0x0660 + int(d)) for d in NUMBER_A)
    response = await web.add_number(tenant["api_key"], arabic_number)
    assert_error(response, 422, "invalid_field")
    response = await web.add_number(
        tenant["api_key"], NUMBER_A, waba_id="".join(chr(0xFF10 + int(d)) for d in WABA)
    )
    assert_error(response, 422, "invalid_field")
    response = await web.add_number(tenant["api_key"], NUMBER_A, pin="١٢٣٤٥٦")
    assert_error(response, 422, "invalid_field")
    assert await db.fetchval("SELECT count(*) FROM numbers") == 0


async def test_patch_number_sets_bot_and_throughput(app: Running) -> None:
    tenant = await app.create_tenant()
    headers = {"authorization": f"Bearer {tenant['api_key']}"}
    assert (await app.add_number(tenant["api_key"], "106540352242922")).status_code == 201
    # Meta allows this number 80/s (STANDARD): more is refused, less is the tenant's choice.
    above = await app.client.patch(
        "/v1/numbers/106540352242922", json={"throughput_mps": 81}, headers=headers
    )
    assert above.status_code == 422, above.text
    assert above.json()["error"]["code"] == "throughput_above_meta"
    lower = await app.client.patch(
        "/v1/numbers/106540352242922", json={"throughput_mps": 20}, headers=headers
    )
    assert lower.status_code == 200 and lower.json()["throughput_mps"] == 20
    # Once Meta raises the number to HIGH (1,000/s), the tenant may too.
    token = await app.seed_number("106540352242922", throughput_mps=1000)
    removed = await app.client.delete("/v1/numbers/106540352242922", headers=headers)
    assert removed.status_code == 200
    again = await app.client.post(
        "/v1/numbers",
        json={"phone_number_id": "106540352242922", "waba_id": WABA, "access_token": token},
        headers=headers,
    )
    assert again.status_code == 201, again.text
    assert again.json()["throughput_level"] == "HIGH"
    response = await app.client.patch(
        "/v1/numbers/106540352242922",
        json={"bot_enabled": False, "throughput_mps": 1000},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["bot_enabled"], response.json()["throughput_mps"]) == (False, 1000)
    got = await app.client.get("/v1/numbers/106540352242922", headers=headers)
    assert got.json()["throughput_mps"] == 1000
    for body, code in (
        ({"throughput_mps": 1001}, "invalid_field"),
        ({"throughput_mps": 0}, "invalid_field"),
        ({"bot_enabled": "yes"}, "invalid_field"),
        ({}, "missing_field"),
        ({"provider": "x"}, "unknown_field"),
    ):
        refused = await app.client.patch("/v1/numbers/106540352242922", json=body, headers=headers)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["code"] == code
    missing = await app.client.patch(
        "/v1/numbers/999999999", json={"bot_enabled": True}, headers=headers
    )
    assert missing.status_code == 404
