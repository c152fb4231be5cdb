"""`wa-cloud bench campaign`: a campaign of N recipients on one number while conversations get
answers from the same number.

The stack is `bench send`'s (embedded PostgreSQL, the sandbox Meta, `wa-cloud serve
--no-worker` and worker processes). One tenant's number runs at `--rate`; a template campaign to
`--recipients` people is created through `POST /v1/broadcasts`, and while it runs
`--conversations` customers each get an answer through `POST /v1/messages` every
`--answer-every` seconds. Reported: the number's send rate over the campaign's steady part
(the campaign's share and the answers' together must be the number's rate within 2 %), 130429s
from the emulator (none allowed), and the answers' latency from the API call to Meta's
acceptance (p99 under 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import random
import time
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx

from wa_cloud.bench.harness import Report, progress, run_bench, say
from wa_cloud.bench.send import (
    TARGET_DEVIATION,
    TEMPLATE_LANGUAGE,
    WABA_ID,
    PlannedNumber,
    Stack,
    _steady_bounds,
    checked,
    create_tenant,
    rate_between,
    seed_number,
    seed_template,
    send_request,
    start_stack,
    watch_until_drained,
)
from wa_cloud.bench.stats import percentile
from wa_cloud.db.pool import connect

CAMPAIGN_TEMPLATE: Final = "bench_promo"
LATENCY_TARGET_SECONDS: Final = 1.0


async def _answers(
    api: httpx.AsyncClient,
    key: str,
    number: str,
    customers: list[str],
    every: float,
    stop: asyncio.Event,
) -> int:
    """Each customer gets an answer every `every` seconds (staggered) until `stop`."""
    headers = {"authorization": f"Bearer {key}"}
    sent = 0

    async def one(customer: str) -> None:
        nonlocal sent
        await asyncio.sleep(random.uniform(0, every))
        while not stop.is_set():
            response = await api.post(
                "/v1/messages", json=send_request(number, customer), headers=headers
            )
            checked(response, "an answer", (202,))
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    await asyncio.gather(*(one(c) for c in customers))
    return sent


async def _measure(args: argparse.Namespace, stack: Stack) -> list[str]:
    number = PlannedNumber(
        "106540359000001", "15559000001", "EAAG-bench-campaign", args.rate, args.recipients
    )
    async with stack.clients() as (api, sandbox):
        tenant = await create_tenant(api, stack.admin_token, "Campaign Co")
        await seed_number(api, sandbox, tenant, number)
        await seed_template(sandbox, WABA_ID)
        promo = {
            "waba_id": WABA_ID,
            "name": CAMPAIGN_TEMPLATE,
            "language": TEMPLATE_LANGUAGE,
            "body": "Hi {{1}}, this week's offer is yours.",
            "category": "MARKETING",
        }
        checked(await sandbox.post("/_sandbox/templates", json=promo), "campaign template")
        conn = await connect(stack.database_url)
        try:
            # The limit is not what this measures: the number may reach every recipient today.
            await conn.execute("UPDATE numbers SET messaging_limit = 'TIER_UNLIMITED'")
            headers = {"authorization": f"Bearer {tenant.api_key}"}
            progress("campaign", f"creating the campaign to {args.recipients} recipients")
            created = checked(
                await api.post(
                    "/v1/broadcasts",
                    json={
                        "from": number.phone_number_id,
                        "name": "Bench",
                        "template": {
                            "name": CAMPAIGN_TEMPLATE,
                            "language": {"code": TEMPLATE_LANGUAGE},
                        },
                        "recipients": [
                            {"to": f"+34 6{i:08d}", "variables": [f"N{i}"]}
                            for i in range(args.recipients)
                        ],
                    },
                    headers=headers,
                ),
                "POST /v1/broadcasts",
            )
            customers = [f"44770{i:07d}" for i in range(args.conversations)]
            stop = asyncio.Event()
            answering = asyncio.create_task(
                _answers(
                    api, tenant.api_key, number.phone_number_id, customers, args.answer_every, stop
                )
            )
            progress("campaign", "sending; answering the conversations meanwhile")
            watch = await watch_until_drained(
                sandbox, conn, args.recipients + 10**9, args.recipients / args.rate * 2 + 60
            )
            stop.set()
            answered = await answering
            await watch_until_drained(sandbox, conn, 10**9, 30)
            shown = checked(
                await api.get(f"/v1/broadcasts/{created['id']}", headers=headers), "progress"
            )
            return await _report(args, conn, number, watch, shown, answered)
        finally:
            await conn.close()


async def _report(
    args: argparse.Namespace,
    conn: asyncpg.Connection,
    number: PlannedNumber,
    watch: Any,
    shown: dict[str, Any],
    answered: int,
) -> list[str]:
    first, last = await conn.fetchrow(
        "SELECT extract(epoch FROM min(accepted_at)), extract(epoch FROM max(accepted_at))"
        " FROM messages WHERE broadcast_id IS NOT NULL"
    )
    low, high = _steady_bounds(float(first), float(last))
    rate = rate_between(watch.samples, number.phone_number_id, low, high)
    latencies = sorted(
        float(r[0])
        for r in await conn.fetch(
            "SELECT extract(epoch FROM accepted_at - created_at) FROM messages"
            " WHERE direction = 'out' AND broadcast_id IS NULL AND accepted_at IS NOT NULL"
        )
    )
    in_steady = await conn.fetchval(
        "SELECT count(*) FROM messages WHERE direction = 'out' AND broadcast_id IS NULL"
        " AND accepted_at BETWEEN to_timestamp($1) AND to_timestamp($2)",
        low,
        high,
    )
    answers_rate = in_steady / (high - low) if high > low else 0.0
    stats = watch.last.get(number.phone_number_id, {})
    rejected = int(stats.get("throughput_rejected", 0))
    deviation = None if rate is None else rate / args.rate - 1
    p50 = percentile(latencies, 0.5) if latencies else None
    p99 = percentile(latencies, 0.99) if latencies else None
    rate_ok = deviation is not None and abs(deviation) <= TARGET_DEVIATION
    latency_ok = p99 is not None and p99 < LATENCY_TARGET_SECONDS
    counts = shown["counts"]
    campaign_rate = 0.0 if rate is None else rate - answers_rate
    reached = counts["sent"] + counts["delivered"] + counts["read"]
    lines = [
        f"campaign: {args.recipients} recipients on one {args.rate}/s number, "
        f"{args.conversations} conversations answered every {args.answer_every:g} s",
        f"  campaign sends accepted: {reached} of {counts['total']} "
        f"(failed {counts['failed']}, skipped {counts['skipped']}), status {shown['status']}",
        "  number's rate over the campaign's steady part: "
        + ("-" if rate is None else f"{rate:.2f}/s ({deviation:+.2%} of {args.rate}/s)")
        + f"; answers' share {answers_rate:.2f}/s, campaign {campaign_rate:.2f}/s",
        f"  130429 from the emulator: {rejected}",
        f"  answers: {len(latencies)} of {answered} accepted; API call -> Meta accepted "
        + (
            "-"
            if p50 is None or p99 is None
            else f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
        ),
        f"target rate within {TARGET_DEVIATION:.0%}: {verdict(rate_ok and not rejected)}",
        f"target answer p99 < {LATENCY_TARGET_SECONDS * 1000:.0f} ms: {verdict(latency_ok)}",
    ]
    return lines


def verdict(held: bool) -> str:
    return "MET" if held else "NOT MET"


async def _run(args: argparse.Namespace, stack: contextlib.AsyncExitStack, workdir: Path) -> Report:
    running = await start_stack(stack, workdir, "campaign", webhooks=False, workers=args.workers)
    lines = await _measure(args, running)
    return Report(lines, 0 if all("NOT MET" not in line for line in lines) else 1)


async def run_campaign_bench(args: argparse.Namespace) -> int:
    if args.recipients < 100 or args.rate < 1 or args.conversations < 0:
        say("campaign", "--recipients at least 100, --rate at least 1")
        return 2
    say(
        "campaign",
        f"{args.recipients} recipients at {args.rate}/s, {args.conversations} conversations, "
        f"{args.workers} worker process(es)",
    )
    started = time.monotonic()
    code = await run_bench("campaign", functools.partial(_run, args))
    say("campaign", f"took {time.monotonic() - started:.0f} s")
    return code
