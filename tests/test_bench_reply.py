"""`wa-cloud bench reply` end to end, tiny: it starts its stack, every conversation is answered
once, and it reports its figures. No timing is asserted (the bench is where timing lives)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_a_tiny_reply_bench_answers_every_conversation_and_reports(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "wa_cloud.cli", "bench", "reply"]
    argv += ["--conversations", "5", "--rounds", "1", "--warmup", "1", "--numbers", "2"]
    done = subprocess.run(
        argv,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["bench"] == "reply"
    assert summary["problems"] == []
    assert summary["overall_ms"]["count"] == 5
    assert summary["latency_ms"]["round 1"]["count"] == 5
    assert 0 < summary["overall_ms"]["p50"] <= summary["overall_ms"]["p99"]
    assert isinstance(summary["target_met"], bool)
    assert any(line.startswith("target p50 < 25 ms and p99 < 100 ms: ") for line in lines)
    assert any(line.startswith("sent ") for line in lines)  # the breakdown's last milestone
