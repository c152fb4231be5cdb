"""The sandbox reviews message templates as Meta does, over real HTTP: approval, rejection by
rule with Meta's reason (on the node and in the webhook), edits and their limits, and the
control calls that play Meta's later decisions (template status and quality, a number's quality
and messaging limit, a user's marketing opt-out) with the webhooks Meta posts for them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import tests.test_sandbox as sandbox_tests
from tests.test_sandbox import (
    NUMBER,
    OTHER_TOKEN,
    TOKEN,
    USER,
    VERSION,
    WABA,
    MakeSandbox,
    Receiver,
    Sandbox,
    assert_meta_error,
    signed,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADERS = {"authorization": f"Bearer {TOKEN}"}
TEMPLATES = f"/{VERSION}/{WABA}/message_templates"


# test_sandbox's fixtures: the webhook receiver (served once per module) and fresh sandboxes.
receiver_server = sandbox_tests.receiver_server
receiver = sandbox_tests.receiver
make_sandbox = sandbox_tests.make_sandbox
sandbox = sandbox_tests.sandbox


# --- helpers ----------------------------------------------------------------------------


def changes(receiver: Receiver, field: str) -> list[dict[str, Any]]:
    return [
        change["value"]
        for document in receiver.documents()
        for entry in document["entry"]
        for change in entry["changes"]
        if change["field"] == field
    ]


def status_updates(receiver: Receiver, template_id: str) -> list[dict[str, Any]]:
    return [
        v
        for v in changes(receiver, "message_template_status_update")
        if v["message_template_id"] == int(template_id)
    ]


async def decided(receiver: Receiver, template_id: str, count: int = 1) -> dict[str, Any]:
    """The `count`-th status webhook for the template, once the review has posted it."""
    await receiver.wait(lambda: len(status_updates(receiver, template_id)) >= count)
    return status_updates(receiver, template_id)[count - 1]


async def create(
    sandbox: Sandbox, name: str, text: str, category: str = "UTILITY", **extra: Any
) -> str:
    body = {
        "name": name,
        "language": "en_US",
        "category": category,
        "components": [{"type": "BODY", "text": text}],
        **extra,
    }
    response = await sandbox.client.post(TEMPLATES, headers=HEADERS, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PENDING"
    template_id: str = response.json()["id"]
    return template_id


async def node(sandbox: Sandbox, template_id: str, **params: str) -> dict[str, Any]:
    response = await sandbox.client.get(f"/{VERSION}/{template_id}", headers=HEADERS, params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def edit(
    sandbox: Sandbox, template_id: str, body: dict[str, Any], token: str = TOKEN
) -> httpx.Response:
    return await sandbox.client.post(
        f"/{VERSION}/{template_id}", headers={"authorization": f"Bearer {token}"}, json=body
    )


def body_of(text: str) -> dict[str, Any]:
    return {"components": [{"type": "BODY", "text": text}]}


async def control(
    sandbox: Sandbox, path: str, body: dict[str, Any], status: int = 200
) -> dict[str, Any]:
    return await sandbox.control(path, body, status)


# --- review -----------------------------------------------------------------------------


async def test_clean_template_is_approved_with_metas_node_fields(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    template_id = await create(sandbox, "order_shipped", "Hi {{1}}, order {{2}} has shipped.")
    pending = await node(sandbox, template_id)
    assert pending["status"] == "PENDING" and pending["rejected_reason"] == "NONE"

    event = await decided(receiver, template_id)
    signed(receiver)
    assert event == {
        "event": "APPROVED",
        "message_template_id": int(template_id),
        "message_template_name": "order_shipped",
        "message_template_language": "en_US",
        "reason": "NONE",
        "message_template_category": "UTILITY",
    }
    got = await node(sandbox, template_id)
    assert got["status"] == "APPROVED" and got["rejected_reason"] == "NONE"
    assert got["quality_score"]["score"] == "UNKNOWN"
    assert isinstance(got["quality_score"]["date"], int)
    assert got["id"] == template_id and got["name"] == "order_shipped"

    listed = await sandbox.client.get(
        TEMPLATES, headers=HEADERS, params={"fields": "name,status,rejected_reason,quality_score"}
    )
    [item] = listed.json()["data"]
    assert set(item) == {"name", "status", "rejected_reason", "quality_score", "id"}
    picked = await node(sandbox, template_id, fields="status")
    assert picked == {"status": "APPROVED", "id": template_id}


REJECTIONS = {
    "only variables": ("UTILITY", "{{1}} {{2}}", "INVALID_FORMAT"),
    "only a variable and punctuation": ("MARKETING", "{{1}}!", "INVALID_FORMAT"),
    "variables with a gap": ("UTILITY", "Hi {{1}}, see {{3}} today.", "INVALID_FORMAT"),
    "promotional utility": ("UTILITY", "Hi {{1}}, get 20% off today.", "INCORRECT_CATEGORY"),
    "utility with a sale": ("UTILITY", "Our summer sale starts, {{1}}.", "INCORRECT_CATEGORY"),
    "utility with an offer": ("UTILITY", "A special offer for you, {{1}}.", "INCORRECT_CATEGORY"),
    "banned word": ("MARKETING", "Hi {{1}}, this is SHIT hot.", "ABUSIVE_CONTENT"),
}


@pytest.mark.parametrize(("category", "text", "reason"), REJECTIONS.values(), ids=REJECTIONS)
async def test_rejection_rules_give_metas_reason(
    sandbox: Sandbox, receiver: Receiver, category: str, text: str, reason: str
) -> None:
    template_id = await create(sandbox, "rejected_one", text, category)
    event = await decided(receiver, template_id)
    assert event["event"] == "REJECTED" and event["reason"] == reason
    assert event["message_template_category"] == category
    if reason == "INVALID_FORMAT":
        info = event["rejection_info"]
        assert info["reason"] and info["recommendation"]
    else:
        assert "rejection_info" not in event
    got = await node(sandbox, template_id)
    assert got["status"] == "REJECTED" and got["rejected_reason"] == reason
    rejected = await sandbox.client.get(TEMPLATES, headers=HEADERS, params={"status": "REJECTED"})
    assert [t["id"] for t in rejected.json()["data"]] == [template_id]
    send = {
        "messaging_product": "whatsapp",
        "to": USER,
        "type": "template",
        "template": {"name": "rejected_one", "language": {"code": "en_US"}},
    }
    assert_meta_error(await sandbox.send(send), {132001})


async def test_templates_that_pass_review(sandbox: Sandbox, receiver: Receiver) -> None:
    marketing = await create(sandbox, "promo", "Get 20% off this sale, {{1}}.", "MARKETING")
    # "wholesale" and "offered" are not "sale" and "offer".
    utility = await create(sandbox, "invoice", "Your wholesale order {{1}} was offered a slot.")
    many = " ".join(f"v{{{{{n}}}}}" for n in range(12, 0, -1))  # {{12}} .. {{1}}, any order
    numbered = await create(sandbox, "many_variables", f"Values: {many} end.")
    for template_id in (marketing, utility, numbered):
        assert (await decided(receiver, template_id))["event"] == "APPROVED"


async def test_edge_variables_and_banned_words_follow_the_config(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    sandbox = await make_sandbox(
        template_reject_edge_placeholders=True, template_banned_words=("bananas", "f*ck")
    )
    starts = await create(sandbox, "starts", "{{1}} is your code.")
    ends = await create(sandbox, "ends", "Your code is {{1}}")
    inside = await create(sandbox, "inside", "Your code is {{1}}.")
    button = await sandbox.client.post(
        TEMPLATES,
        headers=HEADERS,
        json={
            "name": "button_word",
            "language": "en_US",
            "category": "MARKETING",
            "components": [
                {"type": "BODY", "text": "Hello {{1}}, see you."},
                {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Bananas!"}]},
            ],
        },
    )
    default_word = await create(sandbox, "default_word", "Hi {{1}}, shit happens.", "MARKETING")
    starred = await create(sandbox, "starred", "What the F*CK, {{1}}?", "MARKETING")
    assert (await decided(receiver, starts))["reason"] == "INVALID_FORMAT"
    assert (await decided(receiver, ends))["reason"] == "INVALID_FORMAT"
    assert (await decided(receiver, inside))["event"] == "APPROVED"
    assert (await decided(receiver, button.json()["id"]))["reason"] == "ABUSIVE_CONTENT"
    assert (await decided(receiver, starred))["reason"] == "ABUSIVE_CONTENT"
    # The configured list replaces the default one.
    assert (await decided(receiver, default_word))["event"] == "APPROVED"


async def test_no_review_without_an_approval_delay(make_sandbox: MakeSandbox) -> None:
    sandbox = await make_sandbox(template_approval_delay=None)
    template_id = await create(sandbox, "stays", "{{1}}")
    await asyncio.sleep(0.1)
    assert (await node(sandbox, template_id))["status"] == "PENDING"


# --- edits ------------------------------------------------------------------------------


async def test_rejected_template_is_fixed_by_an_edit_and_reviewed_again(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    template_id = await create(sandbox, "points", "Hi {{1}}, a 10% off offer for you.")
    assert (await decided(receiver, template_id))["reason"] == "INCORRECT_CATEGORY"
    # A rejected template may change category: the honest fix.
    edited = await edit(sandbox, template_id, {"category": "MARKETING"})
    assert edited.status_code == 200 and edited.json() == {"success": True}
    pending = await node(sandbox, template_id)
    assert pending["status"] == "PENDING" and pending["rejected_reason"] == "NONE"
    assert pending["category"] == "MARKETING"
    second = await decided(receiver, template_id, 2)
    assert second["event"] == "APPROVED" and second["message_template_category"] == "MARKETING"

    again = await create(sandbox, "typo", "{{1}}")
    assert (await decided(receiver, again))["reason"] == "INVALID_FORMAT"
    fixed = await edit(sandbox, again, {"name": "typo", **body_of("Your code is {{1}}.")})
    assert fixed.status_code == 200, fixed.text
    assert (await decided(receiver, again, 2))["event"] == "APPROVED"
    assert (await node(sandbox, again))["components"][0]["text"] == "Your code is {{1}}."


async def test_edit_refusals(sandbox: Sandbox, receiver: Receiver) -> None:
    template_id = await create(sandbox, "reminder", "Your visit is on {{1}}.")
    pending = await edit(sandbox, template_id, body_of("Your visit is at {{1}}."))
    assert "PENDING" in assert_meta_error(pending, {100})["error_data"]["details"]
    await decided(receiver, template_id)

    for key, value in (("name", "reminder_two"), ("language", "pt_BR")):
        changed = await edit(sandbox, template_id, {key: value, **body_of("Visit on {{1}}.")})
        assert key in assert_meta_error(changed, {100})["error_data"]["details"]
    category = await edit(sandbox, template_id, {"category": "MARKETING"})
    assert "category" in assert_meta_error(category, {100})["error_data"]["details"]
    assert_meta_error(await edit(sandbox, template_id, {}), {100})
    assert_meta_error(await edit(sandbox, template_id, {"components": [{"type": "FOOTER"}]}), {100})
    assert_meta_error(await edit(sandbox, template_id, {"category": "NEWS"}), {100})
    assert_meta_error(await edit(sandbox, template_id, body_of("x"), OTHER_TOKEN), {10}, 403)
    unknown = await edit(sandbox, "1234567890123456", body_of("x"))
    assert assert_meta_error(unknown, {100})["error_subcode"] == 33
    # None of the refusals changed the template or used up its daily edit.
    got = await node(sandbox, template_id)
    assert got["status"] == "APPROVED" and got["category"] == "UTILITY"

    # The same category, name and language may be restated.
    first = await edit(
        sandbox,
        template_id,
        {"name": "reminder", "language": "en_US", "category": "UTILITY", **body_of("On {{1}}.")},
    )
    assert first.status_code == 200, first.text
    assert (await decided(receiver, template_id, 2))["event"] == "APPROVED"
    second = await edit(sandbox, template_id, body_of("See you on {{1}}."))
    assert "24 hours" in assert_meta_error(second, {100})["error_data"]["details"]

    await control(sandbox, "templates/state", {"template_id": template_id, "status": "DISABLED"})
    disabled = await edit(sandbox, template_id, body_of("See you on {{1}}."))
    assert "DISABLED" in assert_meta_error(disabled, {100})["error_data"]["details"]


async def test_approved_edits_per_30_days_and_paused_edits_unlimited(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    sandbox = await make_sandbox(template_edit_interval_seconds=0, template_edits_per_30_days=2)
    template_id = await create(sandbox, "limited", "Order {{1}} is ready.")
    await decided(receiver, template_id)
    for round_ in (2, 3):
        ok = await edit(sandbox, template_id, body_of(f"Order {{{{1}}}} is ready ({round_})."))
        assert ok.status_code == 200, ok.text
        await decided(receiver, template_id, round_)
    third = await edit(sandbox, template_id, body_of("Order {{1}} is ready now."))
    assert "2 times in 30 days" in assert_meta_error(third, {100})["error_data"]["details"]

    # A PAUSED template is edited as often as needed, and goes back to review.
    posted = 3
    for attempt in range(3):
        await control(sandbox, "templates/state", {"template_id": template_id, "status": "PAUSED"})
        ok = await edit(sandbox, template_id, body_of(f"Order {{{{1}}}} waits ({attempt})."))
        assert ok.status_code == 200, ok.text
        posted += 2  # the pause, then the review's decision
        assert (await decided(receiver, template_id, posted))["event"] == "APPROVED"


async def test_a_later_decision_voids_the_pending_review(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    sandbox = await make_sandbox(template_approval_delay=0.2)
    template_id = await create(sandbox, "decided_early", "{{1}}")
    await control(
        sandbox,
        "templates/state",
        {"template_id": template_id, "status": "REJECTED", "reason": "SCAM"},
    )
    await asyncio.sleep(0.3)
    assert [e["reason"] for e in status_updates(receiver, template_id)] == ["SCAM"]
    assert (await node(sandbox, template_id))["rejected_reason"] == "SCAM"


# --- controls: template status and quality ----------------------------------------------


async def test_template_pause_disable_and_quality_post_metas_webhooks(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    template_id = await create(sandbox, "weekly_digest", "Hi {{1}}, your week in review.")
    await decided(receiver, template_id)

    paused = await control(
        sandbox,
        "templates/state",
        {"waba_id": WABA, "name": "weekly_digest", "language": "en_US", "status": "PAUSED"},
    )
    assert paused["template"]["status"] == "PAUSED" and paused["status_webhook_status"] == 200
    event = status_updates(receiver, template_id)[-1]
    assert event["event"] == "PAUSED" and event["reason"] == "NONE"
    assert event["other_info"]["title"] == "FIRST_PAUSE" and event["other_info"]["description"]
    send = {
        "messaging_product": "whatsapp",
        "to": USER,
        "type": "template",
        "template": {
            "name": "weekly_digest",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}],
        },
    }
    assert_meta_error(await sandbox.send(send), {132015})

    await control(
        sandbox,
        "templates/state",
        {"template_id": template_id, "status": "APPROVED", "title": "UNPAUSE"},
    )
    unpaused = status_updates(receiver, template_id)[-1]
    assert unpaused["event"] == "APPROVED" and unpaused["other_info"] == {
        "title": "UNPAUSE",
        "description": "Your WhatsApp message template has been unpaused.",
    }
    assert (await sandbox.send(send)).status_code == 200

    quality = await control(
        sandbox, "templates/state", {"template_id": template_id, "quality_score": "YELLOW"}
    )
    assert quality["template"]["quality_score"]["score"] == "YELLOW"
    assert changes(receiver, "message_template_quality_update") == [
        {
            "previous_quality_score": "UNKNOWN",
            "new_quality_score": "YELLOW",
            "message_template_id": int(template_id),
            "message_template_name": "weekly_digest",
            "message_template_language": "en_US",
        }
    ]
    by_quality = await sandbox.client.get(
        TEMPLATES, headers=HEADERS, params={"quality_score": "YELLOW"}
    )
    assert [t["id"] for t in by_quality.json()["data"]] == [template_id]
    same = await control(
        sandbox, "templates/state", {"template_id": template_id, "quality_score": "YELLOW"}
    )
    assert same["quality_webhook"] is None  # Meta posts a change only

    both = await control(
        sandbox,
        "templates/state",
        {
            "template_id": template_id,
            "status": "DISABLED",
            "reason": "NONE",
            "quality_score": "RED",
        },
    )
    assert both["template"]["status"] == "DISABLED"
    disabled = status_updates(receiver, template_id)[-1]
    assert disabled["event"] == "DISABLED" and isinstance(
        disabled["disable_info"]["disable_date"], int
    )
    assert changes(receiver, "message_template_quality_update")[-1]["new_quality_score"] == "RED"
    assert_meta_error(await sandbox.send(send), {132016})
    assert (await node(sandbox, template_id))["quality_score"]["score"] == "RED"
    signed(receiver)


async def test_template_state_control_refuses_bad_requests(sandbox: Sandbox) -> None:
    template_id = (
        await control(
            sandbox,
            "templates",
            {"waba_id": WABA, "name": "seeded", "language": "en", "body": "Hi {{1}}."},
            201,
        )
    )["id"]
    assert (await node(sandbox, template_id))["quality_score"]["score"] == "UNKNOWN"
    await control(sandbox, "templates/state", {"template_id": "999", "status": "PAUSED"}, 404)
    await control(sandbox, "templates/state", {"template_id": template_id}, 400)
    await control(sandbox, "templates/state", {"template_id": template_id, "status": "GONE"}, 400)
    await control(
        sandbox,
        "templates/state",
        {"template_id": template_id, "status": "REJECTED", "reason": "BORING"},
        400,
    )
    rejected = await control(
        sandbox,
        "templates/state",
        {"template_id": template_id, "status": "REJECTED", "reason": "TAG_CONTENT_MISMATCH"},
    )
    assert rejected["template"]["rejected_reason"] == "TAG_CONTENT_MISMATCH"
    assert rejected["status_webhook"]["entry"][0]["changes"][0]["value"]["reason"] == (
        "TAG_CONTENT_MISMATCH"
    )


# --- controls: the number's quality and messaging limit ---------------------------------


async def test_number_quality_and_limit_post_phone_number_quality_update(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    fields = {"fields": "quality_rating,messaging_limit_tier,display_phone_number"}

    async def number() -> dict[str, Any]:
        response = await sandbox.client.get(f"/{VERSION}/{NUMBER}", headers=HEADERS, params=fields)
        found: dict[str, Any] = response.json()
        return found

    assert await number() == {
        "quality_rating": "GREEN",
        "messaging_limit_tier": "TIER_1K",
        "display_phone_number": "15550783881",
        "id": NUMBER,
    }
    up = await control(
        sandbox, "numbers/quality", {"phone_number_id": NUMBER, "messaging_limit_tier": "TIER_10K"}
    )
    assert up["webhook_status"] == 200 and up["messaging_limit_tier"] == "TIER_10K"
    flagged = await control(
        sandbox, "numbers/quality", {"phone_number_id": NUMBER, "quality_rating": "RED"}
    )
    assert flagged["quality_rating"] == "RED"
    assert (await number())["quality_rating"] == "RED"
    await control(
        sandbox, "numbers/quality", {"phone_number_id": NUMBER, "quality_rating": "GREEN"}
    )
    await control(
        sandbox,
        "numbers/quality",
        {"phone_number_id": NUMBER, "quality_rating": "YELLOW", "messaging_limit_tier": "tier_250"},
    )
    await control(
        sandbox,
        "numbers/quality",
        {"phone_number_id": NUMBER, "event": "FLAGGED", "quality_rating": "YELLOW"},
    )
    assert changes(receiver, "phone_number_quality_update") == [
        {
            "display_phone_number": "15550783881",
            "event": "UPGRADE",
            "old_limit": "TIER_1K",
            "current_limit": "TIER_10K",
        },
        {"display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_10K"},
        {"display_phone_number": "15550783881", "event": "UNFLAGGED", "current_limit": "TIER_10K"},
        {
            "display_phone_number": "15550783881",
            "event": "DOWNGRADE",
            "old_limit": "TIER_10K",
            "current_limit": "TIER_250",
        },
        {"display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_250"},
    ]
    documents = receiver.documents()
    assert documents[0]["entry"][0]["id"] == WABA and isinstance(
        documents[0]["entry"][0]["time"], int
    )
    assert await number() == {
        "quality_rating": "YELLOW",
        "messaging_limit_tier": "TIER_250",
        "display_phone_number": "15550783881",
        "id": NUMBER,
    }
    # The number's default fields are as before.
    plain = (await sandbox.client.get(f"/{VERSION}/{NUMBER}", headers=HEADERS)).json()
    assert "messaging_limit_tier" not in plain and plain["quality_rating"] == "YELLOW"
    listed = (await sandbox.client.get("/_sandbox/numbers")).json()["data"]
    assert listed[0]["messaging_limit_tier"] == "TIER_250"

    unchanged = {"phone_number_id": NUMBER, "quality_rating": "YELLOW"}
    await control(sandbox, "numbers/quality", unchanged, 400)
    await control(sandbox, "numbers/quality", {**unchanged, "messaging_limit_tier": "TIER_3"}, 400)
    await control(sandbox, "numbers/quality", {"phone_number_id": "1", "event": "FLAGGED"}, 404)
    signed(receiver)


async def test_seeded_number_quality_and_limit(sandbox: Sandbox) -> None:
    seeded = await control(
        sandbox,
        "numbers",
        {
            "phone_number_id": "106540352242999",
            "waba_id": WABA,
            "access_token": "EAAG-seeded",
            "quality_rating": "yellow",
            "messaging_limit_tier": "TIER_UNLIMITED",
        },
        201,
    )
    assert seeded["quality_rating"] == "YELLOW"
    assert seeded["messaging_limit_tier"] == "TIER_UNLIMITED"


# --- controls: the user's marketing preferences -----------------------------------------


async def test_user_preferences_webhook_has_metas_shape(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    stop = await control(
        sandbox,
        "user_preferences",
        {"phone_number_id": NUMBER, "wa_id": USER, "value": "stop", "name": "Sheena Nelson"},
    )
    assert stop["webhook_status"] == 200
    await control(
        sandbox, "user_preferences", {"phone_number_id": NUMBER, "wa_id": USER, "value": "resume"}
    )
    [document, _] = receiver.documents()
    entry = document["entry"][0]
    assert entry["id"] == WABA and isinstance(entry["time"], int)
    [stopped, resumed] = changes(receiver, "user_preferences")
    timestamp = stopped["user_preferences"][0]["timestamp"]
    assert isinstance(timestamp, int)
    assert stopped == {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": USER}],
        "user_preferences": [
            {
                "wa_id": USER,
                "detail": "User requested to stop marketing messages",
                "category": "marketing_messages",
                "value": "stop",
                "timestamp": timestamp,
            }
        ],
    }
    assert resumed["user_preferences"][0]["value"] == "resume"
    assert resumed["user_preferences"][0]["detail"] == "User requested to resume marketing messages"
    signed(receiver)
    bad = {"phone_number_id": NUMBER, "wa_id": USER, "value": "maybe"}
    await control(sandbox, "user_preferences", bad, 400)
    await control(sandbox, "user_preferences", {**bad, "phone_number_id": "1"}, 404)
