"""Console isolation: every console route, walked as another tenant with A's ids, is a 404 and
changes nothing; operator pages are a 404 to a business; forms without the CSRF token are 403.

The walk reads the route table, so a route added later is walked too: one whose path parameter
this test cannot fill fails here until it learns it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest
from starlette.routing import Mount, Route

from tests.conftest import NUMBER_A, Running, corpus, wait_idle
from tests.console_client import ConsoleUser
from wa_cloud.console.routes import ROUTES

pytestmark = pytest.mark.asyncio

# Routes anyone may reach signed out or with no id of a tenant in them.
PUBLIC = {
    "/console/",
    "/console/signin",
    "/console/signout",
    "/console/link/{token}",
    "/console/live",
}
OPERATOR_PREFIXES = (
    "/console/tenants",
    "/console/numbers",
    "/console/events",
    "/console/usage",
    "/console/ai",
)


def console_routes() -> list[Route]:
    return [r for r in ROUTES if isinstance(r, Route) and not isinstance(r, Mount)]


async def snapshot(db: asyncpg.Connection) -> list[Any]:
    """What a refused request must not change: A's contacts, messages, bot, files, numbers."""
    return [
        await db.fetch(
            "SELECT id, bot_paused, paused_until, tags, notes, fields, read_at FROM contacts"
            " WHERE phone_number_id = $1 ORDER BY id",
            NUMBER_A,
        ),
        await db.fetchval("SELECT count(*) FROM messages WHERE phone_number_id = $1", NUMBER_A),
        await db.fetch("SELECT * FROM bots WHERE phone_number_id = $1", NUMBER_A),
        await db.fetch("SELECT id FROM bot_files WHERE phone_number_id = $1", NUMBER_A),
        await db.fetch(
            "SELECT bot_enabled, removed_at FROM numbers WHERE phone_number_id = $1", NUMBER_A
        ),
        await db.fetch("SELECT id, active, credits_balance FROM tenants ORDER BY id"),
    ]


async def test_every_console_route_is_a_404_to_another_tenant(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    posted = await app.post_webhook(corpus("messages/text.json"))
    assert posted.status_code == 200
    await wait_idle(db)
    contact_id = await db.fetchval(
        "SELECT id FROM contacts WHERE phone_number_id = $1 LIMIT 1", NUMBER_A
    )
    message_id = await db.fetchval(
        "SELECT id FROM messages WHERE phone_number_id = $1 LIMIT 1", NUMBER_A
    )
    assert contact_id and message_id
    values = {
        "phone_number_id": NUMBER_A,
        "contact_id": str(contact_id),
        "message_id": str(message_id),
        "tenant_id": tenant["id"],
        "file_id": "1",
        # Any campaign id is another tenant's to the intruder (tests/test_console_campaigns.py
        # walks A's own campaign).
        "broadcast_id": str(uuid.uuid4()),
        "action": "pause",
    }
    other = await app.create_tenant("Intruder Co")
    before = await snapshot(db)
    walked = 0
    async with ConsoleUser(app.base_url) as intruder:
        await intruder.sign_in(other["api_key"])
        for route in console_routes():
            if route.path in PUBLIC:
                continue
            names = re.findall(r"\{(\w+)(?::\w+)?\}", route.path)
            missing = [n for n in names if n not in values]
            assert not missing, f"teach this test the parameter(s) {missing} of {route.path}"
            path = route.path
            for name in names:
                path = re.sub(r"\{" + name + r"(?::\w+)?\}", values[name], path)
            operator_page = route.path.startswith(OPERATOR_PREFIXES)
            for method in sorted(route.methods or ()):
                if method == "HEAD":
                    continue
                walked += 1
                if method == "GET":
                    response = await intruder.get(path)
                else:
                    response = await intruder.post(path, {"text": "intrusion", "enabled": "off"})
                if not names and not operator_page:
                    # A page of the caller's own (its inbox, its numbers): nothing of A's in it.
                    assert response.status_code in (200, 303, 422), (method, path, response.text)
                    assert "Corpus Co" not in response.text
                    assert NUMBER_A not in response.text, (method, path)
                    continue
                assert response.status_code == 404, (method, path, response.status_code)
    assert walked > 10
    assert await snapshot(db) == before


async def test_forms_without_the_csrf_token_are_refused(
    app: Running, tenant: dict[str, Any], db: asyncpg.Connection
) -> None:
    before = await snapshot(db)
    async with ConsoleUser(app.base_url) as operator, ConsoleUser(app.base_url) as owner:
        await operator.sign_in(app.settings.admin_token or "")
        await owner.sign_in(tenant["api_key"])
        values = {"phone_number_id": NUMBER_A, "tenant_id": tenant["id"]}
        for route in console_routes():
            if "POST" not in (route.methods or ()) or route.path in PUBLIC:
                continue
            names = re.findall(r"\{(\w+)\}", route.path)
            if any(n not in values for n in names):
                continue
            path = route.path
            for name in names:
                path = path.replace("{" + name + "}", values[name])
            user = operator if route.path.startswith(OPERATOR_PREFIXES) else owner
            forged = await user.client.post(path, data={"csrf": "forged", "name": "X"})
            assert forged.status_code == 403, (path, forged.status_code)
            other_site = await user.client.post(
                path,
                data={"csrf": user.csrf, "name": "X"},
                headers={"origin": "https://attacker.example"},
            )
            assert other_site.status_code == 403, (path, other_site.status_code)
    assert await snapshot(db) == before
