"""What a load run measured: latency percentiles, throughput of 200s, CPU shares, as a table."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from wa_cloud.bench.load import Tally, Window


@dataclass(frozen=True, slots=True)
class Stats:
    requests: int  # answered in the window, whatever the status
    ok: int  # of which 200: what throughput and the ratios count, so errors never look fast
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    outcomes: dict[str, int]
    client_cpu: float  # share of one core used by the load generator
    server_cpu: float | None  # share of one core used by the server process, when local

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "rps": round(self.throughput, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    stats: Stats | None = None
    skipped: str | None = None
    failed: str | None = None


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize(tally: Tally, seconds: float, server_cpu: float | None) -> Stats:
    ordered = sorted(tally.latencies)
    ok = tally.outcomes.get("200", 0)
    return Stats(
        requests=len(ordered),
        ok=ok,
        seconds=seconds,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        errors=sum(tally.outcomes.values()) - ok,
        outcomes=dict(tally.outcomes),
        client_cpu=tally.cpu_seconds / seconds,
        server_cpu=server_cpu,
    )


def _cpu_seconds(pid: int) -> float | None:
    try:
        import psutil  # installed with pgserver; optional all the same
    except ImportError:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


async def process_cpu_share(pid: int | None, window: Window) -> float | None:
    """The server process's share of one core during the measured window."""
    if pid is None:
        return None
    before, after = await window.read_at_edges(functools.partial(_cpu_seconds, pid))
    if before is None or after is None:
        return None
    return (after - before) / window.seconds


def median_run(runs: list[Stats]) -> Stats:
    """The round with the median throughput: one noisy round does not decide the ratio."""
    return sorted(runs, key=lambda s: s.throughput)[len(runs) // 2]


def format_or_dash(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(outcomes: list[Outcome]) -> list[str]:
    columns = "{:<10} {:>9} {:>10} {:>8} {:>8} {:>7} {:>11} {:>11}"
    lines = [
        columns.format(
            "target", "requests", "req/s", "p50 ms", "p99 ms", "errors", "client cpu", "server cpu"
        )
    ]
    for outcome in outcomes:
        stats = outcome.stats
        if stats is None:
            why = f"skipped: {outcome.skipped}" if outcome.skipped else "FAILED to start"
            lines.append(f"{outcome.name:<10} {why}")
            continue
        lines.append(
            columns.format(
                outcome.name,
                stats.requests,
                f"{stats.throughput:.1f}",
                f"{stats.p50_ms:.2f}",
                f"{stats.p99_ms:.2f}",
                stats.errors,
                f"{stats.client_cpu:.0%}",
                format_or_dash(stats.server_cpu, ".0%"),
            )
        )
    return lines
