"""Secrets at rest: SecretBox, and no token, PIN, app secret or API key in the clear anywhere:
not in any column of any table, not in an API response, not in a log record."""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, Running, corpus, wait_idle
from wa_cloud.inbound.signature import sign
from wa_cloud.logs import ConsoleFormatter, JsonFormatter
from wa_cloud.secretbox import SecretBox, SecretUnreadable

ACCESS_TOKEN = "EAAG-secret-token-123"
PIN = "123456"
APP_ID = "2000000000000002"
APP_SECRET = "app-secret-xyz"
VERIFY_TOKEN = "app-verify-token-abc"


# --- SecretBox ------------------------------------------------------------------------------


def test_seal_open_round_trip() -> None:
    box = SecretBox("master-key-one")
    for value in (ACCESS_TOKEN, PIN, "ünïcødé ✓ 🔑", "x" * 5000):
        blob = box.seal(value, context="numbers.access_token:1")
        assert isinstance(blob, bytes)
        assert value.encode() not in blob
        assert box.open(blob, context="numbers.access_token:1") == value
    # A fresh nonce each time: equal plaintexts do not give equal ciphertexts.
    assert box.seal(PIN, context="c") != box.seal(PIN, context="c")


def test_open_in_another_context_fails() -> None:
    box = SecretBox("master-key-one")
    blob = box.seal(ACCESS_TOKEN, context=f"numbers.access_token:{NUMBER_A}")
    for context in (f"numbers.access_token:{NUMBER_B}", f"numbers.pin:{NUMBER_A}", ""):
        with pytest.raises(SecretUnreadable):
            box.open(blob, context=context)


def test_another_master_key_cannot_open() -> None:
    blob = SecretBox("master-key-one").seal(APP_SECRET, context="apps.app_secret:1")
    with pytest.raises(SecretUnreadable):
        SecretBox("master-key-two").open(blob, context="apps.app_secret:1")


def test_tampered_or_truncated_values_do_not_open() -> None:
    box = SecretBox("master-key-one")
    blob = box.seal(APP_SECRET, context="c")
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    for bad in (flipped, blob[:20], b"", b"\x02" + blob[1:]):
        with pytest.raises(SecretUnreadable):
            box.open(bad, context="c")


def test_previous_keys_open_old_values_and_new_seals_use_the_current_key() -> None:
    old = SecretBox("master-key-old")
    blob = old.seal(ACCESS_TOKEN, context="c")
    rotated = SecretBox("master-key-new", previous_keys=("master-key-old",))
    assert rotated.open(blob, context="c") == ACCESS_TOKEN
    assert rotated.key_id != old.key_id

    fresh = rotated.seal(ACCESS_TOKEN, context="c")
    assert SecretBox("master-key-new").open(fresh, context="c") == ACCESS_TOKEN
    with pytest.raises(SecretUnreadable):
        old.open(fresh, context="c")
    with pytest.raises(SecretUnreadable):
        SecretBox("master-key-new").open(blob, context="c")


def test_a_master_key_is_required() -> None:
    with pytest.raises(ValueError):
        SecretBox("")


# --- nothing in the clear -------------------------------------------------------------------


async def columns_containing(db: asyncpg.Connection, needle: str) -> list[str]:
    """Every `table.column` (text, varchar, json, jsonb, bytea) whose value contains `needle`."""
    columns = await db.fetch(
        """SELECT c.table_name, c.column_name, c.data_type
             FROM information_schema.columns c
             JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
              AND c.data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea')
            ORDER BY 1, 2"""
    )
    assert {"numbers", "apps", "api_keys", "tenants"} <= {c["table_name"] for c in columns}
    found = []
    for column in columns:
        table, name, kind = column["table_name"], column["column_name"], column["data_type"]
        if kind == "bytea":
            where, arg = f'position($1::bytea IN "{name}") > 0', needle.encode()
        elif kind in ("json", "jsonb"):
            where, arg = f'strpos("{name}"::text, $1) > 0', needle  # type: ignore[assignment]
        else:
            where, arg = f'strpos("{name}", $1) > 0', needle  # type: ignore[assignment]
        if await db.fetchval(f'SELECT count(*) FROM "{table}" WHERE {where}', arg):
            found.append(f"{table}.{name}")
    return found


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG, set before the app starts."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level not in (logging.NOTSET,):
            caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def rendered(records: list[logging.LogRecord]) -> str:
    """The records as both of our formatters write them (message, extra fields, tracebacks)."""
    json_format, console = JsonFormatter(), ConsoleFormatter()
    return "\n".join(f"{json_format.format(r)}\n{console.format(r)}\n{r.args!r}" for r in records)


async def test_secrets_never_stored_returned_or_logged_in_the_clear(
    debug_logs: pytest.LogCaptureFixture, app: Running, db: asyncpg.Connection
) -> None:
    responses: list[httpx.Response] = []

    async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await app.client.request(method, path, **kwargs)
        responses.append(response)
        return response

    created = await call(
        "POST", "/v1/admin/tenants", json={"name": "Secretive"}, headers=app.admin()
    )
    assert created.status_code == 201, created.text
    api_key = created.json()["api_key"]
    auth = {"authorization": f"Bearer {api_key}"}

    await app.seed_app(APP_ID, APP_SECRET)
    new_app = await call(
        "POST",
        "/v1/apps",
        json={"app_id": APP_ID, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN},
        headers=auth,
    )
    assert new_app.status_code == 201, new_app.text
    number = {
        "phone_number_id": NUMBER_A,
        "waba_id": "102290129340398",
        "access_token": ACCESS_TOKEN,
        "pin": PIN,
        "app_id": APP_ID,
    }
    await app.seed_number(NUMBER_A, "102290129340398", token=ACCESS_TOKEN, pin=PIN)
    registered = await call("POST", "/v1/numbers", json=number, headers=auth)
    assert registered.status_code == 201, registered.text
    # Refusals must not echo what they were sent either.
    again = await call("POST", "/v1/numbers", json=number, headers=auth)
    assert again.status_code == 409
    bad_pin = await call("POST", "/v1/numbers", json={**number, "pin": "12345x"}, headers=auth)
    assert bad_pin.status_code == 422
    duplicate_app = await call(
        "POST",
        "/v1/apps",
        json={"app_id": APP_ID, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN},
        headers=auth,
    )
    assert duplicate_app.status_code == 409
    listed = await call("GET", "/v1/numbers", headers=auth)
    assert listed.status_code == 200

    # The app's webhooks: the sealed secret and verify token are opened and used.
    handshake = await app.client.get(
        f"/webhook/apps/{APP_ID}",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "77"},
    )
    assert (handshake.status_code, handshake.text) == (200, "77")
    body = corpus("messages/text.json")
    delivered = await call(
        "POST",
        f"/webhook/apps/{APP_ID}",
        content=body,
        headers={"x-hub-signature-256": sign(body, APP_SECRET)},
    )
    assert delivered.status_code == 200
    forged = await call(
        "POST",
        f"/webhook/apps/{APP_ID}",
        content=body,
        headers={"x-hub-signature-256": sign(body, "not-the-secret")},
    )
    assert forged.status_code == 403
    await wait_idle(db)
    assert await db.fetchval("SELECT state FROM deliveries") == "processed"
    assert await db.fetchval("SELECT count(*) FROM messages") == 1
    contacts = await call("GET", "/v1/contacts", params={"phone_number_id": NUMBER_A}, headers=auth)
    assert contacts.status_code == 200 and len(contacts.json()["data"]) == 1

    secrets = {
        "access token": ACCESS_TOKEN,
        "pin": PIN,
        "app secret": APP_SECRET,
        "verify token": VERIFY_TOKEN,
        "api key": api_key,
        "master key": app.settings.secret_key or "",
    }

    # 1. The database: no text, json or bytea column of any table holds one of them.
    for label, value in secrets.items():
        assert await columns_containing(db, value) == [], f"{label} stored in the clear"
    # ... yet they are all there, sealed for their place.
    box = SecretBox(app.settings.secret_key or "")
    row = await db.fetchrow("SELECT access_token_enc, pin_enc FROM numbers")
    assert box.open(row["access_token_enc"], context=f"numbers.access_token:{NUMBER_A}") == (
        ACCESS_TOKEN
    )
    assert box.open(row["pin_enc"], context=f"numbers.pin:{NUMBER_A}") == PIN
    with pytest.raises(SecretUnreadable):  # a sealed value moved to another column is useless
        box.open(row["access_token_enc"], context=f"numbers.pin:{NUMBER_A}")
    app_row = await db.fetchrow("SELECT app_secret_enc, verify_token_enc FROM apps")
    assert box.open(app_row["app_secret_enc"], context=f"apps.app_secret:{APP_ID}") == APP_SECRET
    assert box.open(app_row["verify_token_enc"], context=f"apps.verify_token:{APP_ID}") == (
        VERIFY_TOKEN
    )

    # 2. The API: only the tenant creation shows the key, once; nothing else shows a secret.
    for response in responses:
        shown = response.text
        for label, value in secrets.items():
            if label == "api key" and response is created:
                continue
            if label == "pin":
                assert f'"{PIN}"' not in shown, f"{response.request.url} shows the {label}"
                continue
            assert value not in shown, f"{response.request.url} shows the {label}"
        if response.headers.get("content-type", "").startswith("application/json"):
            json.loads(shown)

    # 3. The logs, of every logger at DEBUG, as our formatters would write them.
    records = debug_logs.records
    assert any(r.name.startswith("wa_cloud") for r in records), "no log records captured"
    text = rendered(records)
    for label in ("access token", "pin", "app secret", "api key", "master key"):
        assert secrets[label] not in text, f"the {label} is in the logs"
    assert (app.settings.admin_token or "") not in text
