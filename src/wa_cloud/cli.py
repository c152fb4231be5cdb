"""The `wa-cloud` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from wa_cloud import logs
from wa_cloud.config import Settings
from wa_cloud.errors import ConfigurationError

logger = logging.getLogger("wa_cloud")

# The worker's connections: its indexers, the sender's claims and writes, media, forwards.
WORKER_POOL_SIZE = 8


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from wa_cloud.db import embedded

    return embedded.start(settings.data_dir)


def _production_settings() -> Settings:
    settings = Settings.from_env()
    settings.require_production_secrets()
    return settings


def _migrate(url: str) -> None:
    from wa_cloud.db import migrations

    migrations.upgrade(url)


def _uvicorn_config(app: Any, host: str, port: int) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


def _serve(settings: Settings, host: str, port: int, *, run_worker: bool) -> None:
    import uvicorn

    from wa_cloud.app import create_app
    from wa_cloud.heap import freeze_startup_objects

    app = create_app(settings, run_worker=run_worker)
    freeze_startup_objects()
    uvicorn.Server(_uvicorn_config(app, host, port)).run()


def _sandbox_config(settings: Settings, webhook_url: str | None) -> Any:
    from wa_cloud.sandbox import SandboxConfig

    return SandboxConfig(
        graph_version=settings.graph_version,
        webhook_url=webhook_url or None,
        app_secret=settings.app_secret or "",
        app_id=settings.app_id or "",
    )


def cmd_serve(args: argparse.Namespace) -> None:
    settings = _production_settings()
    logs.configure(settings.log_format)
    settings = replace(settings, database_url=_database_url(settings))
    _serve(settings, args.host, args.port or settings.port, run_worker=not args.no_worker)


def cmd_worker(args: argparse.Namespace) -> None:
    settings = _production_settings()
    logs.configure(settings.log_format)
    settings = replace(settings, database_url=_database_url(settings))
    try:
        import uvloop  # installed with uvicorn[standard]; the web process runs on it too
    except ImportError:
        asyncio.run(_run_worker(settings, args.health_port))
    else:
        uvloop.run(_run_worker(settings, args.health_port))


async def _run_worker(settings: Settings, health_port: int | None = None) -> None:
    import signal

    from wa_cloud.heap import freeze_startup_objects
    from wa_cloud.resources import open_resources
    from wa_cloud.worker import Worker

    async with open_resources(
        settings, pool_size=WORKER_POOL_SIZE, name="wa-cloud worker"
    ) as resources:
        worker = Worker(resources)
        freeze_startup_objects()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Drain: steps in flight finish, then the process exits.
            loop.add_signal_handler(sig, worker.request_stop)
        if health_port is None:
            await worker.run_forever()
        else:
            await _with_health_server(worker, health_port)


async def _with_health_server(worker: Any, port: int) -> None:
    """The worker, and /healthz and /readyz about its loops on `port` (for an orchestrator)."""
    import contextlib
    from collections.abc import Iterator

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from wa_cloud.api.ops import healthz, worker_readiness

    async def readyz(request: Request) -> Response:
        return worker_readiness(worker.health, {"status": "ready"})

    class HealthServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # SIGTERM belongs to the worker: it drains, then this server stops

    app = Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])
    server = HealthServer(_uvicorn_config(app, "0.0.0.0", port))
    serving = asyncio.create_task(server.serve())
    try:
        await worker.run_forever()
    finally:
        server.should_exit = True
        await serving


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    _migrate(_database_url(settings))
    logger.info("migrations applied")


def cmd_dev(args: argparse.Namespace) -> None:
    import contextlib
    import signal

    from wa_cloud.db import embedded

    # SIGTERM (`kill`, a process manager) stops dev the way Ctrl-C does, through every `finally`
    # and so through the embedded database's stop; by default it ends the process on the spot.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = Settings.from_env(dev=True).with_dev_secrets()
    logs.configure(settings.log_format)
    database = (
        contextlib.nullcontext(settings.database_url)
        if settings.database_url
        else embedded.running(settings.data_dir)
    )
    with database as url:
        _run_dev(args, settings, url)


def _run_dev(args: argparse.Namespace, settings: Settings, url: str) -> None:
    """`wa-cloud dev` on the database at `url`: migrations, the banner, then the servers."""
    import uvicorn

    from wa_cloud.app import create_app
    from wa_cloud.sandbox import create_sandbox

    _migrate(url)
    port = args.port or settings.port
    sandbox_port = args.sandbox_port
    base = f"http://localhost:{port}"
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    # Unless a real Graph API is named, the service talks to the local sandbox Meta.
    explicit_graph = bool(os.environ.get("WA_GRAPH_BASE_URL"))
    settings = replace(
        settings,
        database_url=url,
        graph_base_url=settings.graph_base_url if explicit_graph else sandbox_url,
    )
    # Without model keys the assistant talks to the sandbox's models: `echo` answers with what
    # the customer wrote, and the fake Gemini "understands" media, so the bot works at once.
    if not settings.openai_api_key:
        settings = replace(
            settings,
            openai_api_key="sandbox",
            openai_base_url=f"{sandbox_url}/openai/v1",
            ai_model="echo",
        )
    if not settings.gemini_api_key:
        settings = replace(
            settings, gemini_api_key="sandbox", gemini_base_url=f"{sandbox_url}/gemini"
        )
    admin = f"-H 'Authorization: Bearer {settings.admin_token}'"
    print(
        "\n".join(
            [
                "wa-cloud dev",
                f"  API and webhooks  {base}  (POST {base}/webhook, GET {base}/readyz)",
                f"  console           {base}/console/  (sign in with the admin token or a key)",
                f"  sandbox Meta      {sandbox_url}  (Graph API emulator; control: /_sandbox/)",
                f"  Graph API used    {settings.graph_base_url}",
                f"  admin token       {settings.admin_token}",
                f"  app secret        {settings.app_secret}   (signs webhooks to /webhook)",
                f"  verify token      {settings.verify_token}",
                f"  data              {settings.data_dir.resolve()}",
                f'  create a tenant:  curl -s -X POST {admin} -d \'{{"name": "Acme"}}\' '
                f"{base}/v1/admin/tenants",
                "  a number at Meta: curl -s -X POST "
                f'{sandbox_url}/_sandbox/numbers -d \'{{"phone_number_id": "106540352242922", '
                '"waba_id": "102290129340398", "access_token": "EAAG-dev"}\'',
                "  post a message:   wa-cloud simulate --url "
                f"http://127.0.0.1:{port}/webhook --text 'hello'",
                f"  the assistant     model {settings.ai_model} at "
                f"{settings.openai_base_url or 'the OpenAI API'}",
                "  turn it on:       curl -s -X PUT -H 'Authorization: Bearer <api_key>' "
                f"-d '{{\"debounce_seconds\": 0}}' {base}/v1/numbers/<phone_number_id>/bot",
                f"  give credits:     curl -s -X POST {admin} "
                f'-d \'{{"amount": 100, "reason": "trial"}}\' '
                f"{base}/v1/admin/tenants/<tenant id>/credits",
            ]
        ),
        flush=True,
    )

    async def run() -> None:
        servers = [
            uvicorn.Server(_uvicorn_config(create_app(settings, run_worker=True), args.host, port)),
            uvicorn.Server(
                _uvicorn_config(
                    create_sandbox(_sandbox_config(settings, f"http://127.0.0.1:{port}/webhook")),
                    "127.0.0.1",
                    sandbox_port,
                )
            ),
        ]
        await _serve_together(servers)

    asyncio.run(run())


async def _serve_together(servers: list[Any]) -> None:
    """Serve until one server stops, then stop them all; if one never started, exit with
    uvicorn's start-up failure status (as `wa-cloud serve` does)."""
    import contextlib

    from uvicorn.config import STARTUP_FAILURE

    async def serve(server: Any) -> None:
        # uvicorn calls sys.exit when it cannot bind; caught, so the others still stop in order.
        with contextlib.suppress(SystemExit):
            await server.serve()

    serving = [asyncio.create_task(serve(server)) for server in servers]
    # One that ends alone (a port taken, its app's start-up failed) would leave dev half up.
    await asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*serving)
    if not all(server.started for server in servers):
        raise SystemExit(STARTUP_FAILURE)  # uvicorn has logged why


def cmd_sandbox(args: argparse.Namespace) -> None:
    from wa_cloud.sandbox import create_sandbox

    # The dev secrets, so the webhooks it posts verify against `wa-cloud dev` or `serve`.
    settings = Settings.from_env(dev=True).with_dev_secrets()
    logs.configure(settings.log_format)
    config = _sandbox_config(settings, args.webhook_url)
    print(
        f"wa-cloud sandbox  http://{args.host}:{args.port}  (set WA_GRAPH_BASE_URL to this); "
        f"webhooks to {config.webhook_url}",
        flush=True,
    )
    import uvicorn

    uvicorn.Server(_uvicorn_config(create_sandbox(config), args.host, args.port)).run()


def cmd_rotate_key(args: argparse.Namespace) -> None:
    settings = _production_settings()
    logs.configure(settings.log_format)
    from wa_cloud.db.pool import connect
    from wa_cloud.secretbox import SecretBox
    from wa_cloud.tenants.rotation import RotationReport, rotate

    assert settings.secret_key
    box = SecretBox(settings.secret_key, settings.previous_secret_keys)

    async def run() -> RotationReport:
        conn = await connect(_database_url(settings))
        try:
            return await rotate(conn, box)
        finally:
            await conn.close()

    report = asyncio.run(run())
    for name, count in report.resealed.items():
        print(f"{name}: {count} re-sealed")
    if report.ok:
        print(f"checked {report.checked}: every secret is now sealed with key {box.key_id}")
        return
    # Where, never what: the values themselves stay sealed.
    print(
        f"checked {report.checked}: {len(report.unreadable)} could not be opened with key "
        f"{box.key_id} (sealed with a key not in WA_SECRET_KEY or WA_PREVIOUS_SECRET_KEYS, "
        "or damaged):",
        file=sys.stderr,
    )
    for value in report.unreadable:
        print(f"  {value}", file=sys.stderr)
    sys.exit(1)


def cmd_retention(args: argparse.Namespace) -> None:
    settings = _production_settings()
    logs.configure(settings.log_format)
    from wa_cloud.db.pool import create_pool
    from wa_cloud.retention import RetentionReport, run_retention

    async def run() -> RetentionReport:
        pool = await create_pool(_database_url(settings), max_size=2)
        try:
            return await run_retention(pool, settings)
        finally:
            await pool.close()

    report = asyncio.run(run())
    print(
        f"retention ({settings.raw_retention_days:g} days for raw bodies): "
        f"{report.delivery_bodies} delivery bodies cleared, {report.forwards} forwards, "
        f"{report.orphaned_events} orphaned events, {report.media} media, "
        f"{report.pair_pacing} pair-pacing rows deleted; {report.messages} messages purged"
    )
    if report.busy:
        print("another process was running a retention pass: this one stopped early")


def _on_database(work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `work` with one connection to the configured database (no secrets needed)."""
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    from wa_cloud.db.pool import connect

    async def run() -> Any:
        conn = await connect(_database_url(settings))
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def cmd_deliveries_show(args: argparse.Namespace) -> None:
    from wa_cloud.inbound.replay import delivery_json, delivery_text, load_delivery

    delivery = _on_database(lambda conn: load_delivery(conn, args.id))
    if delivery is None:
        print(f"no delivery {args.id}", file=sys.stderr)
        sys.exit(1)
    if args.json:
        print(json.dumps(delivery_json(delivery), indent=2, ensure_ascii=False))
    else:
        print(delivery_text(delivery))


def cmd_deliveries_replay(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime

    from wa_cloud.inbound.replay import ReplayOutcome, parse_since, replay_by_id, replay_since

    if bool(args.ids) == (args.since is not None):
        print("wa-cloud: name delivery ids or --since, one of the two", file=sys.stderr)
        sys.exit(2)
    if args.ids:
        outcome: ReplayOutcome = _on_database(
            lambda conn: replay_by_id(conn, args.ids, dry_run=args.dry_run, actor="cli")
        )
    else:
        try:
            since = parse_since(args.since, datetime.now(UTC))
        except ValueError as exc:
            print(f"wa-cloud: --since: {exc}", file=sys.stderr)
            sys.exit(2)
        outcome = _on_database(
            lambda conn: replay_since(conn, since, dry_run=args.dry_run, actor="cli")
        )
    for delivery_id, why in outcome.refused.items():
        print(f"delivery {delivery_id} not replayed: {why}", file=sys.stderr)
    if args.ids and outcome.refused:
        print("nothing was replayed", file=sys.stderr)
        sys.exit(1)
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {len(outcome.chosen) if args.dry_run else outcome.replayed} deliveries")
    for c in outcome.chosen:
        quarantined = c.quarantined_at.isoformat(timespec="seconds") if c.quarantined_at else "-"
        print(f"  {c.id}  quarantined {quarantined}  {c.code or '-'}  source {c.source}")


def cmd_simulate(args: argparse.Namespace) -> None:
    from wa_cloud.sandbox.simulate import simulate

    settings = Settings.from_env(dev=True)
    if not args.secret:
        settings = settings.with_dev_secrets()
    secret = args.secret or settings.app_secret or ""
    code = asyncio.run(simulate(args.url, secret, args.files, args.text, args.to, args.sender))
    sys.exit(code)


def cmd_templates(args: argparse.Namespace) -> None:
    from wa_cloud.outbox.template_cli import run

    sys.exit(run(args))


def cmd_bench(args: argparse.Namespace) -> None:
    from wa_cloud.bench.ingest import run_ingest_bench

    sys.exit(asyncio.run(run_ingest_bench(args)))


def cmd_bench_send(args: argparse.Namespace) -> None:
    from wa_cloud.bench.send import run_send_bench

    sys.exit(asyncio.run(run_send_bench(args)))


def cmd_bench_noisy(args: argparse.Namespace) -> None:
    from wa_cloud.bench.noisy import run_noisy_bench

    sys.exit(asyncio.run(run_noisy_bench(args)))


def cmd_bench_drain(args: argparse.Namespace) -> None:
    from wa_cloud.bench.drain import run_drain_bench

    sys.exit(asyncio.run(run_drain_bench(args)))


def cmd_bench_reply(args: argparse.Namespace) -> None:
    from wa_cloud.bench.reply import run_reply_bench

    sys.exit(asyncio.run(run_reply_bench(args)))


def cmd_bench_campaign(args: argparse.Namespace) -> None:
    from wa_cloud.bench.campaign import run_campaign_bench

    sys.exit(asyncio.run(run_campaign_bench(args)))


def cmd_bench_console(args: argparse.Namespace) -> None:
    from wa_cloud.bench.console import run_console_bench

    sys.exit(asyncio.run(run_console_bench(args)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wa-cloud", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the web process (with an in-process worker by default)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 8000")
    serve.add_argument("--no-worker", action="store_true", help="web only; run `worker` apart")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="the worker process alone")
    worker.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="serve /healthz and /readyz (the worker's loops) on this port",
    )
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    dev = sub.add_parser("dev", help="everything on one machine: embedded database, web, worker")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=None)
    dev.add_argument("--sandbox-port", type=int, default=8100)
    dev.set_defaults(func=cmd_dev)

    rotate = sub.add_parser(
        "rotate-key",
        help="re-seal every secret with WA_SECRET_KEY (old keys in WA_PREVIOUS_SECRET_KEYS)",
    )
    rotate.set_defaults(func=cmd_rotate_key)

    retention = sub.add_parser(
        "retention",
        help="one retention pass: old webhook bodies, forwards, orphaned events, media",
    )
    retention.set_defaults(func=cmd_retention)

    deliveries = sub.add_parser("deliveries", help="stored webhook deliveries")
    deliveries_sub = deliveries.add_subparsers(dest="deliveries", required=True)
    show = deliveries_sub.add_parser("show", help="one delivery, with its error and body")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="as JSON")
    show.set_defaults(func=cmd_deliveries_show)
    replay = deliveries_sub.add_parser(
        "replay", help="put quarantined deliveries back in the queue (after a fix)"
    )
    replay.add_argument("ids", type=int, nargs="*", help="these deliveries (all or none)")
    replay.add_argument(
        "--since", default=None, help="all quarantined since: 2h, 30m, 1d, or ISO time (UTC)"
    )
    replay.add_argument("--dry-run", action="store_true", help="list them, change nothing")
    replay.set_defaults(func=cmd_deliveries_replay)

    sandbox = sub.add_parser("sandbox", help="the Meta Graph API emulator alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8100)
    sandbox.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8000/webhook",
        help="where status, inbound and template webhooks are posted ('' for nowhere)",
    )
    sandbox.set_defaults(func=cmd_sandbox)

    simulate = sub.add_parser("simulate", help="post signed webhooks to a running server")
    simulate.add_argument("--url", default="http://127.0.0.1:8000/webhook")
    simulate.add_argument("--secret", default=None, help="app secret (default: the dev one)")
    simulate.add_argument("--text", default=None, help="send one inbound text message")
    simulate.add_argument("--to", default="106540352242922", help="business phone_number_id")
    simulate.add_argument("--sender", default="16505551234", help="customer wa_id")
    simulate.add_argument("files", nargs="*", help="corpus files to post as they are")
    simulate.set_defaults(func=cmd_simulate)

    templates = sub.add_parser(
        "templates", help="templates as code: check, diff, push, pull (templates_meta/)"
    )
    templates.add_argument("action", choices=["check", "diff", "push", "pull"])
    templates.add_argument(
        "paths", nargs="*", help="template files or directories (default: templates_meta)"
    )
    templates.add_argument("--number", help="the phone_number_id whose WABA to compare with")
    templates.add_argument(
        "--prune", action="store_true", help="push: delete WABA templates no file names"
    )
    templates.set_defaults(func=cmd_templates)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    ingest = bench_sub.add_parser("ingest", help="webhook ingest vs a bare Starlette endpoint")
    ingest.add_argument("--url", default=None, help="a running server's webhook URL")
    ingest.add_argument("--secret", default=None, help="its app secret (with --url)")
    ingest.add_argument("--connections", type=int, default=64)
    ingest.add_argument("--seconds", type=float, default=10.0)
    ingest.add_argument("--warmup", type=float, default=2.0)
    ingest.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    ingest.add_argument("--no-pywa", action="store_true", help="skip pywa's webhook server")
    ingest.set_defaults(func=cmd_bench)
    send = bench_sub.add_parser("send", help="outbound pacing against the sandbox Meta")
    send.add_argument("--numbers", type=int, default=10, help="numbers at --rate")
    send.add_argument("--rate", type=int, default=80, help="their throughput (messages/s)")
    send.add_argument("--fast-rate", type=int, default=1000, help="one more number (0: none)")
    send.add_argument("--seconds", type=float, default=20.0, help="backlog per number, in s")
    send.add_argument("--workers", type=int, default=1, help="worker processes (0: in serve)")
    send.add_argument("--webhooks", action="store_true", help="sandbox posts status webhooks")
    send.add_argument("--enqueue", choices=("sql", "api"), default="sql")
    send.add_argument("--connections", type=int, default=32, help="with --enqueue api")
    send.add_argument("--timeout", type=float, default=None, help="default: 3 x seconds + 30")
    send.set_defaults(func=cmd_bench_send)
    noisy = bench_sub.add_parser(
        "noisy", help="webhook p99 with and without one tenant flooding slow sends and uploads"
    )
    noisy.add_argument("--connections", type=int, default=32, help="quiet webhook connections")
    noisy.add_argument("--seconds", type=float, default=10.0, help="measured, per phase")
    noisy.add_argument("--warmup", type=float, default=2.0)
    noisy.add_argument("--rounds", type=int, default=3, help="baseline + flood rounds")
    noisy.add_argument(
        "--same-priority",
        action="store_true",
        help="run the fakes of outside parties (Meta, the file server, the flood's client) at "
        "our processes' CPU priority (default: the lowest, as on machines of their own)",
    )
    noisy.add_argument(
        "--waits",
        action="store_true",
        help="sample what PostgreSQL's busy backends wait on, by process, and report it",
    )
    noisy.add_argument(
        "--rate",
        type=float,
        default=None,
        help="quiet webhooks a second, paced (latency counted from when each was due); "
        "default: as fast as answers come",
    )
    noisy.add_argument(
        "--flood",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        help="only these floods, comma-separated: unknown-templates, slow-sends, uploads, "
        "url-uploads, bad-webhooks (default: all)",
    )
    noisy.set_defaults(func=cmd_bench_noisy)
    drain = bench_sub.add_parser(
        "drain", help="deliveries indexed a second by 1, 2... workers; lag at a sustained rate"
    )
    drain.add_argument(
        "--deliveries", type=int, default=20000, help="stored before each worker count's drain"
    )
    drain.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    drain.add_argument(
        "--mix",
        choices=("messages", "corpus"),
        default="messages",
        help="single-message corpus deliveries, or every valid corpus file",
    )
    drain.add_argument(
        "--rate", type=float, default=None, help="then post this many a second (with --seconds)"
    )
    drain.add_argument(
        "--seconds", type=float, default=None, help="for this long, with the workers running"
    )
    drain.set_defaults(func=cmd_bench_drain)
    reply = bench_sub.add_parser(
        "reply", help="the assistant's overhead: inbound webhook -> its answer's Graph send"
    )
    reply.add_argument(
        "--conversations", type=int, default=200, help="customers writing at once, per round"
    )
    reply.add_argument("--rounds", type=int, default=3, help="measured rounds")
    reply.add_argument(
        "--warmup", type=int, default=20, help="conversations answered first, not measured"
    )
    reply.add_argument(
        "--numbers", type=int, default=1, help="the tenant's numbers the customers write to"
    )
    reply.add_argument(
        "--throughput", type=int, default=1000, help="each number's send rate (messages/s)"
    )
    reply.add_argument("--workers", type=int, default=1, help="wa-cloud worker processes")
    reply.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="write a round's messages evenly over this many seconds (default 0: at once)",
    )
    reply.set_defaults(func=cmd_bench_reply)
    campaign = bench_sub.add_parser(
        "campaign", help="a campaign at a number's rate while conversations get answers"
    )
    campaign.add_argument("--recipients", type=int, default=10_000)
    campaign.add_argument("--rate", type=int, default=80, help="the number's messages/s")
    campaign.add_argument(
        "--conversations", type=int, default=50, help="customers answered through the API"
    )
    campaign.add_argument(
        "--ai-conversations",
        type=int,
        default=50,
        help="other customers writing to the assistant (model echo, debounce 0)",
    )
    campaign.add_argument(
        "--answer-every",
        type=float,
        default=8.0,
        help="seconds between a conversation's answers, or its customer's messages",
    )
    campaign.add_argument("--workers", type=int, default=1, help="wa-cloud worker processes")
    campaign.set_defaults(func=cmd_bench_campaign)
    console = bench_sub.add_parser(
        "console", help="console pages' latency over a seeded inbox of a million messages"
    )
    console.add_argument(
        "--conversations", type=int, default=10_000, help="the business's contacts"
    )
    console.add_argument(
        "--messages", type=int, default=1_000_000, help="spread over the conversations"
    )
    console.add_argument(
        "--requests", type=int, default=100, help="measured requests per page, per pass"
    )
    console.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight in the second pass"
    )
    console.set_defaults(func=cmd_bench_console)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ConfigurationError as exc:
        print(f"wa-cloud: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
