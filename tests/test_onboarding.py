"""Onboarding numbers against the sandbox Meta: each Graph step, each failure, nothing
half-stored, Embedded Signup's code exchange, removal."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.conftest import NUMBER_A, NUMBER_B, WABA, Running


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def _register(app: Running, key: str, **body: Any) -> Any:
    return await app.client.post(
        "/v1/numbers",
        json={"phone_number_id": NUMBER_A, "waba_id": WABA, **body},
        headers=bearer(key),
    )


async def _graph_calls(app: Running) -> list[tuple[str, str, int]]:
    log = (await app.sandbox.get("/_sandbox/requests")).json()["data"]
    return [(r["method"], r["path"].split("/", 2)[-1], r["status"]) for r in log]


async def test_registration_runs_metas_steps_and_stores_what_meta_says(
    web: Running, db: asyncpg.Connection
) -> None:
    tenant = await web.create_tenant()
    await web.seed_number(
        NUMBER_A,
        token="EAAG-good",
        pin="123456",
        verified_name="Acme Shop",
        display_phone_number="15550783881",
    )
    response = await _register(web, tenant["api_key"], access_token="EAAG-good", pin="123456")
    assert response.status_code == 201, response.text
    number = response.json()
    assert number["verified_name"] == "Acme Shop"
    assert number["display_phone_number"] == "15550783881"
    assert number["quality_rating"] == "GREEN"
    assert number["registered"] is True
    assert await _graph_calls(web) == [
        ("GET", NUMBER_A, 200),
        ("GET", f"{WABA}/phone_numbers", 200),
        ("POST", f"{WABA}/subscribed_apps", 200),
        ("POST", f"{NUMBER_A}/register", 200),
    ]
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log")]
    assert "number.registered" in actions


@pytest.mark.parametrize(
    ("seed", "token", "pin", "status", "code", "meta_code"),
    [
        ({}, "EAAG-never-issued", None, 422, "meta_token_invalid", 190),
        (
            {"phone": NUMBER_B, "token": "EAAG-other"},
            "EAAG-other",
            None,
            422,
            "meta_permission_denied",
            10,
        ),
        (
            {"token": "EAAG-good", "pin": "123456"},
            "EAAG-good",
            "654321",
            422,
            "meta_register_failed",
            None,
        ),
    ],
    ids=["bad-token-190", "permission-10", "wrong-pin"],
)
async def test_each_failure_is_metas_code_and_stores_nothing(
    web: Running,
    db: asyncpg.Connection,
    seed: dict[str, str],
    token: str,
    pin: str | None,
    status: int,
    code: str,
    meta_code: int | None,
) -> None:
    tenant = await web.create_tenant()
    if seed.get("phone") == NUMBER_B:  # A exists at Meta, but the token is B's
        await web.seed_number(NUMBER_A, token="EAAG-a-own")
    if seed:
        await web.seed_number(
            seed.get("phone", NUMBER_A),
            token=seed["token"],
            **({"pin": seed["pin"]} if "pin" in seed else {}),
        )
    response = await _register(
        web, tenant["api_key"], access_token=token, **({"pin": pin} if pin else {})
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["meta"]["code"] == meta_code or meta_code is None
    assert error["meta"]["code"] is not None
    assert token not in response.text
    assert await db.fetchval("SELECT count(*) FROM numbers") == 0
    failed = await db.fetchrow(
        "SELECT severity, detail FROM audit_log WHERE action = 'onboarding.failed'"
    )
    assert failed["severity"] == "error"
    assert failed["detail"]["meta"]["code"] == error["meta"]["code"]


async def test_number_of_another_waba_is_refused(web: Running, db: asyncpg.Connection) -> None:
    tenant = await web.create_tenant()
    await web.seed_number(NUMBER_A, waba_id="102290129349999", token="EAAG-good")
    response = await _register(web, tenant["api_key"], access_token="EAAG-good")
    assert response.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM numbers") == 0


async def test_embedded_signup_exchanges_the_code(web: Running, db: asyncpg.Connection) -> None:
    tenant = await web.create_tenant()
    await web.seed_number(NUMBER_A, token="EAAG-number-token")
    grant = await web.sandbox.post(
        "/_sandbox/codes",
        json={"code": "es-code-1", "access_token": "EAAG-business-token", "waba_id": WABA},
    )
    assert grant.status_code == 201, grant.text
    response = await web.client.post(
        "/v1/onboarding/embedded-signup",
        json={"code": "es-code-1", "waba_id": WABA, "phone_number_id": NUMBER_A},
        headers=bearer(tenant["api_key"]),
    )
    assert response.status_code == 201, response.text
    calls = await _graph_calls(web)
    assert calls[0][:2] == ("GET", "oauth/access_token")
    exchange = (await web.sandbox.get("/_sandbox/requests")).json()["data"][0]
    assert exchange["query"]["client_id"] == web.settings.app_id
    assert "client_secret" in exchange["query"]
    # The exchanged token is what was stored (sealed) and used.
    sealed = await db.fetchval("SELECT access_token_enc FROM numbers")
    assert b"EAAG-business-token" not in bytes(sealed)
    used = (await web.sandbox.get("/_sandbox/requests")).json()["data"][1]["headers"]
    assert used.get("authorization") == "***"

    reused = await web.client.post(
        "/v1/onboarding/embedded-signup",
        json={"code": "es-code-1", "waba_id": WABA, "phone_number_id": NUMBER_B},
        headers=bearer(tenant["api_key"]),
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "meta_exchange_failed"


async def test_delete_deregisters_and_forgets_secrets_and_can_register_again(
    web: Running, db: asyncpg.Connection
) -> None:
    tenant = await web.create_tenant()
    assert (await web.add_number(tenant["api_key"], NUMBER_A, pin="123456")).status_code == 201
    removed = await web.client.delete(f"/v1/numbers/{NUMBER_A}", headers=bearer(tenant["api_key"]))
    assert removed.status_code == 200, removed.text
    assert removed.json()["deregistered"] is True
    assert ("POST", f"{NUMBER_A}/deregister", 200) in await _graph_calls(web)
    row = await db.fetchrow("SELECT access_token_enc, pin_enc, removed_at FROM numbers")
    assert row["access_token_enc"] is None and row["pin_enc"] is None
    assert row["removed_at"] is not None
    listed = await web.client.get("/v1/numbers", headers=bearer(tenant["api_key"]))
    assert listed.json()["data"] == []
    gone = await web.client.get(f"/v1/numbers/{NUMBER_A}", headers=bearer(tenant["api_key"]))
    assert gone.status_code == 404
    # Removed, the number may move to whoever Meta accepts a token from for it; while that
    # tenant has it, it is taken for everyone else.
    other = await web.create_tenant("Other")
    taken = await web.add_number(other["api_key"], NUMBER_A)
    assert taken.status_code == 201, taken.text
    back = await web.add_number(tenant["api_key"], NUMBER_A)
    assert back.status_code == 409 and back.json()["error"]["code"] == "number_exists"
    released = await web.client.delete(f"/v1/numbers/{NUMBER_A}", headers=bearer(other["api_key"]))
    assert released.status_code == 200
    again = await web.add_number(tenant["api_key"], NUMBER_A)
    assert again.status_code == 201, again.text
