"""`wa-cloud rotate-key`: every sealed secret re-sealed under the new master key."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace

import asyncpg
import pytest

from tests.conftest import NUMBER_A, Running, serve
from wa_cloud.config import Settings
from wa_cloud.secretbox import SecretBox, SecretUnreadable
from wa_cloud.tenants import sealed


async def test_rotate_key_reseals_everything_and_the_service_follows(
    app: Running, settings: Settings, db: asyncpg.Connection
) -> None:
    tenant = await app.create_tenant()
    assert (await app.add_number(tenant["api_key"], NUMBER_A, pin="123456")).status_code == 201
    await app.seed_app("2000000000000002", "s3cret")
    created = await app.client.post(
        "/v1/apps",
        json={"app_id": "2000000000000002", "app_secret": "s3cret", "verify_token": "vt"},
        headers={"authorization": f"Bearer {tenant['api_key']}"},
    )
    assert created.status_code == 201
    old_key, new_key = settings.secret_key or "", "a-brand-new-master-key-of-some-length"

    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "WA_SECRET_KEY": new_key,
        "WA_PREVIOUS_SECRET_KEYS": old_key,
        "WA_APP_SECRET": "x",
        "WA_ADMIN_TOKEN": "y" * 32,  # production refuses a short one
        "WA_LOG_FORMAT": "json",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "wa_cloud.cli", "rotate-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "numbers.access_token_enc: 1 re-sealed" in done.stdout
    assert "apps.app_secret_enc: 1 re-sealed" in done.stdout
    assert old_key not in done.stdout + done.stderr and new_key not in done.stdout + done.stderr

    new_box, old_box = SecretBox(new_key), SecretBox(old_key)
    token = await db.fetchval("SELECT access_token_enc FROM numbers")
    assert new_box.open(token, context=sealed.NUMBER_TOKEN.context(NUMBER_A)) == (
        "EAAG-test-token-" + NUMBER_A
    )
    with pytest.raises(SecretUnreadable):
        old_box.open(token, context=sealed.NUMBER_TOKEN.context(NUMBER_A))
    pin = await db.fetchval("SELECT pin_enc FROM numbers")
    assert new_box.open(pin, context=sealed.NUMBER_PIN.context(NUMBER_A)) == "123456"

    # A second run finds nothing left under the old key.
    again = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "wa_cloud.cli", "rotate-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "numbers.access_token_enc: 0 re-sealed" in again.stdout

    # The service started with only the new key still verifies the tenant app's webhooks.
    async with serve(replace(settings, secret_key=new_key), run_worker=False) as web:
        handshake = await web.client.get(
            "/webhook/apps/2000000000000002",
            params={"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "7"},
        )
        assert (handshake.status_code, handshake.text) == (200, "7")
