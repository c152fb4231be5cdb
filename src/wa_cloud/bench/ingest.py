"""`wa-cloud bench ingest`: webhook ingest against a bare Starlette endpoint and pywa, same run.

Three targets are measured one after another on this machine, each alone so none competes with
another for CPU: "bare" (a Starlette route that reads the body and answers 200), "pywa" (pywa's
own FastAPI webhook, which checks the signature and acknowledges before processing) and
"wa-cloud" (ours, which commits the body durably before it acknowledges; or `--url`).

Every target gets the same signed corpus bodies from the same load generator: keep-alive HTTP/1.1
connections written over raw asyncio streams with pre-built request bytes, in their own
process(es) on uvloop, because a general-purpose HTTP client would be slower than the servers and
the comparison would then measure the client.

The servers are subprocesses of this module (`python -m wa_cloud.bench.ingest --serve
bare|pywa`) and of `python -m wa_cloud.cli serve`, so the bench needs nothing but the installed
package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wa_cloud.bench.harness import (
    HOST,
    UVICORN_SETTINGS,
    WEBHOOK_PATH,
    Launch,
    Report,
    StartFailed,
    embedded_database,
    free_port,
    local_server,
    progress,
    run_bench,
    say,
    serve_launch,
    wa_cloud_env,
)
from wa_cloud.bench.load import (
    LOAD_PROCESSES,
    LOAD_START_ALLOWANCE,
    Endpoint,
    Window,
    build_requests,
    check_load_args,
    event_loop_factory,
    read_bodies,
    run_load,
)
from wa_cloud.bench.stats import (
    Outcome,
    Stats,
    median_run,
    process_cpu_share,
    render_table,
    summarize,
)

# The baselines read their app secret from the environment, not argv, so `ps` never shows it.
SECRET_ENV = "WA_BENCH_APP_SECRET"
PYWA_VERIFY_TOKEN = "wa-cloud-bench"
# The corpus's business number: pywa filters updates by phone_id, so its handler really runs.
PYWA_PHONE_ID = "106540352242922"


# --- servers ------------------------------------------------------------------------------------


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def webhook(request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    return Starlette(routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"])])


def _pywa_app(app_secret: str) -> Any:
    """pywa on a FastAPI app as its docs recommend, in its faster async flavour (pywa_async:
    the sync one hands every update to a thread and measures at about a tenth of bare here);
    no callback_url, so it never calls Meta."""
    from fastapi import FastAPI
    from pywa_async import WhatsApp, types

    app = FastAPI()
    wa = WhatsApp(
        phone_id=PYWA_PHONE_ID,
        token="wa-cloud-bench-token",  # never used: nothing here sends
        server=app,
        app_secret=app_secret,
        verify_token=PYWA_VERIFY_TOKEN,
        validate_updates=True,
        webhook_endpoint=WEBHOOK_PATH,
    )

    @wa.on_message()  # type: ignore[untyped-decorator]  # pywa is not typed here
    async def ignore(_: WhatsApp, message: types.Message) -> None:
        """Does nothing: the bench measures pywa's webhook path, not a bot."""

    return app


def serve_baseline(kind: str, port: int) -> None:
    """Run one baseline server in this process until it is signalled (the subprocess side)."""
    import uvicorn

    app = _bare_app() if kind == "bare" else _pywa_app(os.environ[SECRET_ENV])
    uvicorn.run(app, port=port, **UVICORN_SETTINGS)


def _baseline_launch(kind: str, secret: str) -> Launch:
    port = free_port()
    argv = [sys.executable, "-m", "wa_cloud.bench.ingest", "--serve", kind, "--port", str(port)]
    if kind == "pywa":
        query = f"hub.mode=subscribe&hub.verify_token={PYWA_VERIFY_TOKEN}&hub.challenge=1"
        ready_path, ready_status = f"{WEBHOOK_PATH}?{query}", 200
    else:
        ready_path, ready_status = WEBHOOK_PATH, None  # POST-only route: any answer means up
    env = {**os.environ, SECRET_ENV: secret}
    return Launch(kind, argv, env, port, ready_path, ready_status)


# --- measuring and reporting --------------------------------------------------------------------


async def measure(
    endpoint: Endpoint, requests: list[bytes], args: argparse.Namespace, pid: int | None
) -> Stats:
    window = Window(time.monotonic() + LOAD_START_ALLOWANCE, args.warmup, args.seconds)
    server_cpu = asyncio.create_task(process_cpu_share(pid, window))
    tally = await run_load(endpoint, requests, window, args.connections)
    return summarize(tally, args.seconds, await server_cpu)


def _pywa_missing() -> str | None:
    # Looked up, not imported: the server subprocess imports them, and reports if that fails.
    for name in ("pywa", "fastapi"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed (pip install 'wa-cloud[bench]')"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    endpoint: Endpoint
    requests: list[bytes]
    pid: int | None


async def _start_local(
    stack: contextlib.AsyncExitStack,
    launch: Launch,
    bodies: list[bytes],
    secret: str,
    workdir: Path,
) -> Target:
    progress(launch.name, "starting")
    pid = await stack.enter_async_context(local_server(launch, workdir))
    endpoint = Endpoint(HOST, launch.port, WEBHOOK_PATH)
    return Target(launch.name, endpoint, build_requests(endpoint, bodies, secret), pid)


async def _start_wa_cloud(
    stack: contextlib.AsyncExitStack,
    bodies: list[bytes],
    args: argparse.Namespace,
    workdir: Path,
) -> tuple[Target, str | None]:
    """Our server (or `--url`), and the database URL when we started the database."""
    if args.url:
        endpoint = Endpoint.from_url(args.url)
        return Target(
            "wa-cloud", endpoint, build_requests(endpoint, bodies, args.secret), None
        ), None
    progress("wa-cloud", "starting embedded PostgreSQL")
    database_url = await stack.enter_async_context(embedded_database(workdir))
    secret = secrets.token_hex(16)
    env = wa_cloud_env(database_url, secret)
    launch = serve_launch("wa-cloud", env, free_port(), in_process_worker=False)
    return await _start_local(stack, launch, bodies, secret, workdir), database_url


async def _check_stored(database_url: str, acknowledged: int) -> None:
    """Every acknowledged delivery must be a committed row: count them after the run."""
    from wa_cloud.db.pool import connect

    conn = await connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM deliveries")
    finally:
        await conn.close()
    verdict = "ok" if stored >= acknowledged else "MISSING ROWS"
    progress(
        "wa-cloud",
        f"{stored} deliveries committed; {acknowledged} acknowledged in the measured windows "
        f"(plus warm-ups): {verdict}",
    )


def ratios(outcomes: list[Outcome]) -> dict[str, float]:
    by_name = {o.name: o.stats for o in outcomes if o.stats is not None}
    bare = by_name.get("bare")
    if bare is None or bare.throughput == 0:
        return {}
    return {
        f"{name}/bare": round(stats.throughput / bare.throughput, 3)
        for name, stats in by_name.items()
        if name != "bare"
    }


LEGEND = (
    "bare: reads the body, answers 200 | pywa: checks the signature, answers, processes in a "
    "task | wa-cloud: checks the signature, commits to PostgreSQL, answers",
    "req/s counts 200 responses; p50/p99 from writing a request to reading its whole response; "
    "cpu: share of one core in the measured window (server: its own process, not PostgreSQL)",
)
# docs/design.md, "Performance targets": against bare, in the same run.
TARGET_RATIO = 0.6
TARGET_P99_MS = 50.0


def _verdict(name: str, ratio: float) -> str:
    line = f"{name:<14} {ratio:.2f} of bare throughput"
    if name == "wa-cloud/bare":
        line += f" (target: at least {TARGET_RATIO:.2f}, p99 under {TARGET_P99_MS:.0f} ms)"
    return line


def render_report(outcomes: list[Outcome], args: argparse.Namespace, bodies: int) -> list[str]:
    lines = ["", *render_table(outcomes), *LEGEND, ""]
    for outcome in outcomes:
        if outcome.failed:
            lines += [f"{outcome.name} failed to start: {outcome.failed}", ""]
        elif outcome.stats and outcome.stats.errors:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.stats.outcomes.items()))
            lines.append(f"{outcome.name} responses: {detail}")
    found = ratios(outcomes)
    for name in ("wa-cloud/bare", "pywa/bare"):
        if name in found:
            lines.append(_verdict(name, found[name]))
    summary = {
        "bench": "ingest",
        "connections": args.connections,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "bodies": bodies,
        "load_processes": LOAD_PROCESSES,
        "targets": {o.name: o.stats.summary() for o in outcomes if o.stats is not None},
        "ratios": found,
    }
    return [*lines, json.dumps(summary)]


def exit_code(outcomes: list[Outcome]) -> int:
    for outcome in outcomes:
        if outcome.failed:
            return 1
        if outcome.stats is not None and outcome.stats.ok == 0:
            return 1  # every request errored, or none was answered at all
    return 0


def _check_args(args: argparse.Namespace) -> str | None:
    problem = check_load_args(args)
    if problem:
        return problem
    if args.url:
        if not args.secret:
            return "--url needs --secret, the app secret that server verifies signatures with"
        try:
            Endpoint.from_url(args.url)
        except ValueError as exc:
            return str(exc)
    return None


async def _run_targets(
    bodies: list[bytes],
    args: argparse.Namespace,
    stack: contextlib.AsyncExitStack,
    workdir: Path,
) -> Report:
    secret = secrets.token_hex(16)
    # Every server is started first and stays up; the rounds then load one target at a time (the
    # others idle), alternating, so a slow minute of the machine hits all.
    order = ["bare", "pywa", "wa-cloud"]
    targets: dict[str, Target] = {}
    outcomes: dict[str, Outcome] = {}
    database_url: str | None = None
    for name in order:
        try:
            if name == "wa-cloud":
                targets[name], database_url = await _start_wa_cloud(stack, bodies, args, workdir)
            elif name == "pywa" and (args.no_pywa or _pywa_missing()):
                outcomes[name] = Outcome(
                    name, skipped="--no-pywa" if args.no_pywa else _pywa_missing()
                )
            else:
                launch = _baseline_launch(name, secret)
                targets[name] = await _start_local(stack, launch, bodies, secret, workdir)
        except StartFailed as exc:
            outcomes[name] = Outcome(name, failed=str(exc))
    runs: dict[str, list[Stats]] = {name: [] for name in targets}
    for round_ in range(1, args.rounds + 1):
        for name, target in targets.items():
            progress(
                name,
                f"round {round_}/{args.rounds}: {args.warmup:g} s warmup + {args.seconds:g} s",
            )
            runs[name].append(await measure(target.endpoint, target.requests, args, target.pid))
    for name, stats in runs.items():
        outcomes[name] = Outcome(name, median_run(stats))
    if database_url is not None:
        await _check_stored(database_url, sum(s.ok for s in runs["wa-cloud"]))
    found = [outcomes[name] for name in order if name in outcomes]
    return Report(render_report(found, args, len(bodies)), exit_code(found))


async def run_ingest_bench(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        say("ingest", problem)
        return 2
    bodies = await asyncio.to_thread(read_bodies)
    if not bodies:
        say("ingest", "the webhooks/ corpus is empty")
        return 2
    say(
        "ingest",
        f"{len(bodies)} corpus bodies, {args.connections} connections, "
        f"{args.rounds} round(s) of {args.warmup:g} s warmup + {args.seconds:g} s per target "
        "(the median round is shown), "
        f"{LOAD_PROCESSES} load process(es){'' if event_loop_factory() else ' (no uvloop)'}",
    )
    return await run_bench("ingest", functools.partial(_run_targets, bodies, args))


def main(argv: list[str] | None = None) -> None:
    """`python -m wa_cloud.bench.ingest --serve bare|pywa --port N`: a baseline server."""
    parser = argparse.ArgumentParser(prog="python -m wa_cloud.bench.ingest")
    parser.add_argument("--serve", choices=("bare", "pywa"), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve_baseline(args.serve, args.port)


if __name__ == "__main__":
    main()
