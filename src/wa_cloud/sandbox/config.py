"""What a sandbox run is configured with: one frozen value, passed to `create_sandbox`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    # Echoed in `paging.next` links; every `v<major>.<minor>` path prefix is accepted anyway,
    # so a client pinned to another version still talks to the sandbox.
    graph_version: str = "v23.0"
    # Where status, inbound and template webhooks are POSTed; None posts nothing. A WABA that
    # subscribed with `override_callback_uri` gets its webhooks there instead, as on Meta.
    webhook_url: str | None = None
    app_secret: str = field(default="sandbox-app-secret", repr=False)
    app_id: str = "1000000000000001"
    # Seconds after acceptance at which each status webhook is posted.
    sent_delay: float = 0.05
    delivered_delay: float = 0.1
    read_delay: float = 0.2
    # Users with read receipts off never produce `read`; False emulates them.
    read_receipts: bool = True
    # Meta redelivers and reorders: each webhook is posted twice with this probability, and with
    # `reorder` the delays of one message's statuses are shuffled (a `read` before `delivered`).
    duplicate_probability: float = 0.0
    reorder: bool = False
    # Per-number throughput (messages/s) when `/_sandbox/numbers` does not give one.
    default_throughput_mps: int = 80
    # Pair rate (one business number -> one user): a GCRA, i.e. a token bucket of
    # `pair_burst` tokens refilled one per `pair_interval_seconds`. Meta documents "about one
    # message every 6 s on average" and bursts of up to 45 are reported, so these defaults allow
    # 45 at once and then one every 6 s.
    pair_burst: int = 45
    pair_interval_seconds: float = 6.0
    # A template created through the Graph API is APPROVED after this many seconds (and a
    # `message_template_status_update` is posted); None leaves it PENDING.
    template_approval_delay: float | None = 0.1
    # Review rules (see `templates.review`): a template with any of these words (whole words,
    # any case) is REJECTED with ABUSIVE_CONTENT.
    template_banned_words: tuple[str, ...] = ("fuck", "shit")
    # Meta rejects a body that starts or ends with a variable (INVALID_FORMAT). Off by default
    # because older fixtures create bodies such as "Sale {{1}}" and expect them APPROVED; a
    # body of variables only is rejected either way.
    template_reject_edge_placeholders: bool = False
    # Meta lets an APPROVED template be edited once per 24 h and 10 times per 30 days (edits of
    # a REJECTED or PAUSED one are not limited); tests shorten the first to reach the second.
    template_edit_interval_seconds: float = 86_400.0
    template_edits_per_30_days: int = 10
    # A media URL from `GET /{media_id}` stops working after this (Meta: 5 minutes).
    media_url_ttl_seconds: float = 300.0
    # Webhook delivery: attempts per webhook, the first retry's wait (doubled each time), and
    # the per-attempt timeout.
    webhook_attempts: int = 3
    webhook_retry_seconds: float = 0.2
    webhook_timeout_seconds: float = 5.0
    # The control API's request log keeps this many of the newest Graph requests.
    request_log_limit: int = 10_000
    # Seeds duplicates and reordering only; ids (wamids, media ids) are always random so that a
    # restarted sandbox never repeats an id a database already holds.
    seed: int | None = None
