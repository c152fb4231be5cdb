"""The `wa-cloud` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

from wa_cloud import logs
from wa_cloud.config import Settings
from wa_cloud.errors import ConfigurationError

logger = logging.getLogger("wa_cloud")


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


def _serve(settings: Settings, host: str, port: int, *, run_worker: bool) -> None:
    import uvicorn

    from wa_cloud.app import create_app

    app = create_app(settings, run_worker=run_worker)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
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
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    import signal

    from wa_cloud.db.pool import create_pool
    from wa_cloud.graph.client import GraphClient, new_http_client
    from wa_cloud.metrics import Metrics
    from wa_cloud.secretbox import SecretBox
    from wa_cloud.worker import Worker

    assert settings.database_url and settings.secret_key
    pool = await create_pool(settings.database_url, max_size=8)
    try:
        async with new_http_client(settings.graph_timeout_seconds) as http:
            graph = GraphClient(http, settings.graph_base_url, settings.graph_version)
            worker = Worker(settings, pool, Metrics(), graph, SecretBox(settings.secret_key))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.stop()))
            await worker.run_forever()
    finally:
        await pool.close()


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    _migrate(_database_url(settings))
    logger.info("migrations applied")


def cmd_dev(args: argparse.Namespace) -> None:
    settings = Settings.from_env(dev=True).with_dev_secrets()
    logs.configure(settings.log_format)
    url = _database_url(settings)
    _migrate(url)
    settings = replace(settings, database_url=url)
    port = args.port or settings.port
    base = f"http://localhost:{port}"
    print(
        "\n".join(
            [
                "wa-cloud dev",
                f"  API and webhooks  {base}  (POST {base}/webhook, GET {base}/readyz)",
                f"  admin token       {settings.admin_token}",
                f"  app secret        {settings.app_secret}   (signs webhooks to /webhook)",
                f"  verify token      {settings.verify_token}",
                f"  data              {settings.data_dir.resolve()}",
                "  create a tenant:  curl -s -X POST -H 'Authorization: Bearer "
                f'{settings.admin_token}\' -d \'{{"name": "Acme"}}\' {base}/v1/admin/tenants',
            ]
        ),
        flush=True,
    )
    _serve(settings, args.host, port, run_worker=True)


def cmd_simulate(args: argparse.Namespace) -> None:
    from wa_cloud.simulate import simulate

    settings = Settings.from_env(dev=True)
    if not args.secret:
        settings = settings.with_dev_secrets()
    secret = args.secret or settings.app_secret or ""
    code = asyncio.run(simulate(args.url, secret, args.files, args.text, args.to, args.sender))
    sys.exit(code)


def cmd_bench(args: argparse.Namespace) -> None:
    from wa_cloud.bench import run_ingest_bench

    sys.exit(asyncio.run(run_ingest_bench(args)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wa-cloud", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the web process (with an in-process worker by default)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 8000")
    serve.add_argument("--no-worker", action="store_true", help="web only; run `worker` apart")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="the worker process alone")
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    dev = sub.add_parser("dev", help="everything on one machine: embedded database, web, worker")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=None)
    dev.set_defaults(func=cmd_dev)

    simulate = sub.add_parser("simulate", help="post signed webhooks to a running server")
    simulate.add_argument("--url", default="http://127.0.0.1:8000/webhook")
    simulate.add_argument("--secret", default=None, help="app secret (default: the dev one)")
    simulate.add_argument("--text", default=None, help="send one inbound text message")
    simulate.add_argument("--to", default="106540352242922", help="business phone_number_id")
    simulate.add_argument("--sender", default="16505551234", help="customer wa_id")
    simulate.add_argument("files", nargs="*", help="corpus files to post as they are")
    simulate.set_defaults(func=cmd_simulate)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    ingest = bench_sub.add_parser("ingest", help="webhook ingest vs a bare Starlette endpoint")
    ingest.add_argument("--url", default=None, help="a running server's webhook URL")
    ingest.add_argument("--secret", default=None, help="its app secret (with --url)")
    ingest.add_argument("--connections", type=int, default=64)
    ingest.add_argument("--seconds", type=float, default=10.0)
    ingest.add_argument("--warmup", type=float, default=2.0)
    ingest.add_argument("--no-pywa", action="store_true", help="skip pywa's webhook server")
    ingest.set_defaults(func=cmd_bench)
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
