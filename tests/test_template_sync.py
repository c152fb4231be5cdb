"""Templates as code against the sandbox's review: `wa-cloud templates diff|push|pull` and
`/v1/templates`, including an edit, a change that needs a new name, and a rejection with
Meta's reason."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NUMBER_A, WABA, Meta, process_env

ORDER = json.loads((Path(__file__).parent.parent / "templates_meta/order_update.json").read_text())


def template(name: str, body: str, category: str = "UTILITY", **example: Any) -> dict[str, Any]:
    return {
        "name": name,
        "language": "en_US",
        "category": category,
        "parameter_format": "POSITIONAL",
        "components": [{"type": "BODY", "text": body, **({"example": example} if example else {})}],
    }


async def templates_cli(meta: Meta, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "wa_cloud.cli", "templates", *args],
        env=process_env(meta.app.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def listed(meta: Meta) -> dict[str, dict[str, Any]]:
    response = await meta.app.client.get(
        "/v1/templates", params={"phone_number_id": NUMBER_A}, headers=meta.tenant()
    )
    assert response.status_code == 200, response.text
    return {t["name"]: t for t in response.json()["data"]}


async def wait_listed(meta: Meta, name: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            shown = (await listed(meta)).get(name)
            if shown is not None and shown["status"] == status:
                return shown
            await asyncio.sleep(0.05)


async def test_push_creates_then_edits_and_diff_names_what_needs_a_new_name(
    meta: Meta, tmp_path: Path
) -> None:
    (tmp_path / "order_update.json").write_text(json.dumps(ORDER))
    reminder = template(
        "visit_reminder", "Hello {{1}}, see you on {{2}} at the shop.", body_text=[["Ana", "May 2"]]
    )
    (tmp_path / "visit_reminder.json").write_text(json.dumps(reminder))

    diff = await templates_cli(meta, "diff", str(tmp_path), "--number", NUMBER_A)
    assert diff.returncode == 0, diff.stderr
    assert "create         order_update (en_US)" in diff.stdout
    assert "create         visit_reminder (en_US)" in diff.stdout

    push = await templates_cli(meta, "push", str(tmp_path), "--number", NUMBER_A)
    assert push.returncode == 0, push.stderr + push.stdout
    assert "[ok: PENDING]" in push.stdout
    await wait_listed(meta, "order_update", "APPROVED")
    await wait_listed(meta, "visit_reminder", "APPROVED")

    again = await templates_cli(meta, "diff", str(tmp_path), "--number", NUMBER_A)
    assert again.stdout.count("unchanged") == 2, again.stdout

    # An approved template's text may change (an edit); its category may not (a new name).
    reminder["components"][0]["text"] = "Hello {{1}}, we expect you on {{2}} at the shop."
    (tmp_path / "visit_reminder.json").write_text(json.dumps(reminder))
    changed_order = {**ORDER, "category": "MARKETING"}
    (tmp_path / "order_update.json").write_text(json.dumps(changed_order))
    push = await templates_cli(meta, "push", str(tmp_path), "--number", NUMBER_A)
    assert push.returncode == 0, push.stderr + push.stdout
    assert "edit           visit_reminder (en_US): components [ok: PENDING]" in push.stdout
    assert "needs_new_name order_update (en_US): an approved template's category" in push.stdout
    edited = await wait_listed(meta, "visit_reminder", "APPROVED")
    assert edited["category"] == "UTILITY"
    stored = await meta.sandbox.get(
        f"/{meta.app.settings.graph_version}/{WABA}/message_templates",
        params={"name": "visit_reminder"},
        headers={"authorization": f"Bearer EAAG-test-token-{NUMBER_A}"},
    )
    (node,) = stored.json()["data"]
    assert node["components"][0]["text"].startswith("Hello {{1}}, we expect you")


async def test_a_rejection_shows_meta_s_reason_in_the_list(meta: Meta) -> None:
    promo = template(
        "spring_sale",
        "Hi {{1}}, our spring sale gives you 20% discount on {{2}} today.",
        body_text=[["Ana", "shoes"]],
    )
    put = await meta.app.client.put(
        "/v1/templates/spring_sale",
        params={"phone_number_id": NUMBER_A},
        json=promo,
        headers=meta.tenant(),
    )
    assert put.status_code == 201, put.text
    assert put.json() == {
        "name": "spring_sale",
        "language": "en_US",
        "action": "create",
        "status": "PENDING",
    }
    rejected = await wait_listed(meta, "spring_sale", "REJECTED")
    assert rejected["rejected_reason"] == "INCORRECT_CATEGORY"


async def test_put_refuses_a_file_that_breaks_meta_s_rules_before_meta_sees_it(meta: Meta) -> None:
    bad = template("bad_one", "{{1}} is all", body_text=[["x"]])
    put = await meta.app.client.put(
        "/v1/templates/bad_one",
        params={"phone_number_id": NUMBER_A},
        json=bad,
        headers=meta.tenant(),
    )
    assert put.status_code == 422
    error = put.json()["error"]
    assert error["code"] == "template_invalid"
    assert "placeholder_at_edge" in {v["rule"] for v in error["violations"]}
    requests = await meta.sandbox.get("/_sandbox/requests", params={"path_contains": "templates"})
    assert not [r for r in requests.json()["data"] if r["method"] == "POST"]


async def test_pull_writes_the_waba_s_templates_as_files_and_delete_removes_one(
    meta: Meta, tmp_path: Path
) -> None:
    await meta.app.client.put(
        "/v1/templates/order_update",
        params={"phone_number_id": NUMBER_A},
        json=ORDER,
        headers=meta.tenant(),
    )
    await wait_listed(meta, "order_update", "APPROVED")
    pulled = await templates_cli(meta, "pull", str(tmp_path / "out"), "--number", NUMBER_A)
    assert pulled.returncode == 0, pulled.stderr
    written = json.loads((tmp_path / "out" / "order_update.json").read_text())
    assert written == ORDER

    gone = await meta.app.client.delete(
        "/v1/templates/order_update", params={"phone_number_id": NUMBER_A}, headers=meta.tenant()
    )
    assert gone.status_code == 200, gone.text
    assert "order_update" not in await listed(meta)
    missing = await meta.app.client.delete(
        "/v1/templates/order_update", params={"phone_number_id": NUMBER_A}, headers=meta.tenant()
    )
    assert missing.status_code == 404


@pytest.mark.parametrize("path", ["/v1/templates", "/v1/templates/x"])
async def test_another_tenant_s_number_is_not_found(meta: Meta, path: str) -> None:
    other = await meta.app.create_tenant("Other Co")
    headers = {"authorization": f"Bearer {other['api_key']}"}
    params = {"phone_number_id": NUMBER_A}
    if path.endswith("/x"):
        response = await meta.app.client.request("DELETE", path, params=params, headers=headers)
    else:
        response = await meta.app.client.get(path, params=params, headers=headers)
    assert response.status_code == 404
