"""`wa-cloud bench console` end to end, tiny: it seeds what it says, signs in as the business and
the operator, times every page and reports. No timing is asserted (the bench is where timing
lives)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PAGES = {
    "inbox",
    "inbox list",
    "thread",
    "thread messages",
    "contact panel",
    "thread closed",
    "search name",
    "search word",
    "search number",
    "my numbers",
    "my number",
    "my usage",
    "tenants",
    "tenant",
    "numbers",
    "events",
    "usage",
}


def test_a_tiny_console_bench_seeds_times_every_page_and_reports(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "wa_cloud.cli", "bench", "console"]
    argv += ["--conversations", "50", "--messages", "500", "--requests", "3", "--concurrency", "2"]
    done = subprocess.run(
        argv,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    summary = json.loads(lines[-1])
    assert summary["bench"] == "console"
    seeded = summary["seeded"]
    assert seeded["conversations"] == 50
    assert seeded["messages"] == 500
    assert seeded["tenants"] == 31  # ours and TENANTS others, each with a number
    assert seeded["numbers"] == 31
    assert seeded["media"] > 0 and seeded["events"] == 100 and seeded["credit_ledger"] > 50
    assert 0 < summary["word_matches"] < 500
    # The busiest conversation has far more than the mean of 10 messages.
    assert summary["busy_messages"] > 20
    assert set(summary["pages"]) == PAGES
    # Every page renders what was seeded (failed sends, media, unread counts, a ledger...):
    # each request timed as a 200, none an error.
    assert summary["errors"] == [], summary["errors"]
    for name, page in summary["pages"].items():
        assert page["path"].startswith("/console/"), name
        assert page["first"]["count"] == 1, (name, page["first"])
        for pass_ in ("sequential", "concurrent"):
            figures = page[pass_]
            assert figures["count"] == 3 and figures["errors"] == 0, (name, pass_, figures)
            assert 0 < figures["p50"] <= figures["p95"] <= figures["max"], (name, figures)
    assert isinstance(summary["target_met"], bool)
    assert done.returncode == (0 if summary["target_met"] else 1), done.stderr[-3000:]
    assert any(
        line.startswith("target p95 < 100 ms for every page, one at a time: ") for line in lines
    )
    assert any(
        line.startswith("target p95 < 100 ms for every page, 2 in flight: ") for line in lines
    )
