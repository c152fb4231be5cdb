"""The console's routes, under /console/ (design.md, Console)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from wa_cloud.console import campaigns, inbox, numbers, operator, usage, views
from wa_cloud.routing import resource

ROUTES: list[BaseRoute] = [
    Mount("/console/static", StaticFiles(packages=[("wa_cloud.console", "static")])),
    resource("/console/", GET=views.home),
    resource("/console/signin", GET=views.signin_form, POST=views.signin),
    resource("/console/signout", POST=views.signout),
    resource("/console/link/{token}", GET=views.link_form, POST=views.link_signin),
    resource("/console/live", GET=views.live),
    # The business's inbox (console/inbox.py); the list before the thread: "list" is no id.
    resource("/console/inbox", GET=inbox.inbox),
    resource("/console/inbox/{phone_number_id}/list", GET=inbox.conversation_list),
    resource("/console/inbox/{phone_number_id}/{contact_id}", GET=inbox.thread),
    resource("/console/inbox/{phone_number_id}/{contact_id}/messages", GET=inbox.thread_messages),
    resource("/console/inbox/{phone_number_id}/{contact_id}/panel", GET=inbox.panel),
    resource("/console/inbox/{phone_number_id}/{contact_id}/send", POST=inbox.send),
    resource("/console/inbox/{phone_number_id}/{contact_id}/pause", POST=inbox.pause_bot),
    resource("/console/inbox/{phone_number_id}/{contact_id}/resume", POST=inbox.resume_bot),
    resource("/console/inbox/{phone_number_id}/{contact_id}/contact", POST=inbox.update_contact),
    resource("/console/media/{message_id}", GET=inbox.media),
    # The operator's pages (console/operator.py).
    resource("/console/tenants", GET=operator.tenants, POST=operator.create_tenant),
    resource("/console/tenants/{tenant_id}", GET=operator.tenant),
    resource("/console/tenants/{tenant_id}/invite", POST=operator.invite),
    resource("/console/tenants/{tenant_id}/active", POST=operator.set_active),
    resource("/console/tenants/{tenant_id}/credits", POST=operator.add_credits),
    resource("/console/numbers", GET=operator.numbers),
    resource("/console/numbers/{phone_number_id}/bot", POST=operator.number_bot),
    resource("/console/events", GET=operator.events),
    resource("/console/usage", GET=operator.usage),
    resource("/console/ai", GET=operator.ai_defaults),
    resource("/console/my-numbers", GET=numbers.my_numbers),
    resource("/console/my-numbers/{phone_number_id}", GET=numbers.my_number),
    resource("/console/my-numbers/{phone_number_id}/session", GET=numbers.number_session),
    resource("/console/my-numbers/{phone_number_id}/bot", POST=numbers.save_number_bot),
    resource(
        "/console/my-numbers/{phone_number_id}/files/{file_id}/delete",
        POST=numbers.delete_number_file,
    ),
    resource("/console/my-usage", GET=usage.my_usage),
    # The business's campaigns (console/campaigns.py); the list before a campaign: "list" is no id.
    resource("/console/campaigns", GET=campaigns.campaigns),
    resource("/console/campaigns/list", GET=campaigns.campaign_list),
    resource("/console/campaigns/{broadcast_id}", GET=campaigns.campaign),
    resource("/console/campaigns/{broadcast_id}/progress", GET=campaigns.campaign_counts),
    resource("/console/campaigns/{broadcast_id}/recipients.csv", GET=campaigns.recipients_csv),
    resource("/console/campaigns/{broadcast_id}/{action}", POST=campaigns.move_campaign),
]
