"""`wa-cloud dev` run the way a newcomer runs it: a subprocess on free ports with its own data
directory. Stopped by Ctrl-C or SIGTERM, it leaves nothing behind, the embedded PostgreSQL
included; its terminal shows the banner, not the embedded server's start-up chatter.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

HOST = "127.0.0.1"
# The first start runs initdb and every migration: seconds on a laptop, more on a busy CI box.
READY_TIMEOUT = 120.0
# Each of dev's two uvicorn servers drains for up to 10 s, then the database stops.
EXIT_TIMEOUT = 40.0
# The postmaster's children follow it out; allow them a moment to go.
GONE_TIMEOUT = 5.0
POLL = 0.2
# What pgserver's INFO logs put on the terminal: its command lines with initdb's and pg_ctl's
# whole output.
CHATTER = (
    "pgserver",
    "initdb",
    "pg_ctl",
    "Running commandline",
    "database cluster",
    "server started",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _processes_under(directory: Path) -> list[psutil.Process]:
    """Every process whose command line names `directory`: initdb and the postmaster run with
    `-D` in it."""
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline: list[str] = process.info["cmdline"] or []
        if any(str(directory) in arg for arg in cmdline):
            found.append(process)
    return found


def _wait_gone(directory: Path) -> list[psutil.Process]:
    deadline = time.monotonic() + GONE_TIMEOUT
    while (left := _processes_under(directory)) and time.monotonic() < deadline:
        time.sleep(POLL)
    return left


def _kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=GONE_TIMEOUT)


@dataclass(frozen=True, slots=True)
class Dev:
    process: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    sandbox_port: int
    stdout: Path
    stderr: Path

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()

    def wait_for(self, what: str, timeout: float, poll: float, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out, err = self.output()
                pytest.fail(f"wa-cloud dev exited with {self.process.returncode}:\n{out}\n{err}")
            if ready():
                return
            time.sleep(poll)
        out, err = self.output()
        pytest.fail(f"{what}: not within {timeout} s:\n{out}\n{err}")

    def ctrl_c(self) -> None:
        # A terminal's Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(self.process.pid, signal.SIGINT)


def _answers_ready(port: int) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"http://{HOST}:{port}/readyz", timeout=2.0).status_code == 200
    return False


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[[], Dev]]:
    """Starts `wa-cloud dev` without waiting; whatever the outcome, nothing of it outlives the
    test."""
    data_dir = (tmp_path / "data").resolve()
    launched: list[Dev] = []

    def start() -> Dev:
        # A newcomer's shell: nothing of ours set, so dev picks the embedded database and its
        # generated secrets under WA_DATA_DIR.
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("WA_") and key not in {"DATABASE_URL", "PORT"}
        }
        env["WA_DATA_DIR"] = str(data_dir)
        port, sandbox_port = _free_port(), _free_port()
        stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        argv = [sys.executable, "-m", "wa_cloud.cli", "dev", "--host", HOST]
        argv += ["--port", str(port), "--sandbox-port", str(sandbox_port)]
        with stdout.open("wb") as out, stderr.open("wb") as err:
            # A process group of its own, as a shell gives a foreground job.
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        launched.append(Dev(process, data_dir, port, sandbox_port, stdout, stderr))
        return launched[-1]

    try:
        yield start
    finally:
        for dev in launched:
            if dev.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(dev.process.pid, signal.SIGKILL)
                dev.process.wait(timeout=EXIT_TIMEOUT)
        _kill_all(_processes_under(data_dir))


@pytest.fixture
def dev(launch: Callable[[], Dev]) -> Dev:
    running = launch()
    running.wait_for(
        "/readyz answering 200", READY_TIMEOUT, POLL, lambda: _answers_ready(running.port)
    )
    return running


def _assert_stopped_cleanly(dev: Dev) -> tuple[str, str]:
    """Exited 0 with nothing left running under its data directory, and no chatter; returns
    (stdout, stderr)."""
    try:
        dev.process.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"wa-cloud dev still running {EXIT_TIMEOUT} s after the signal")
    out, err = dev.output()
    left = _wait_gone(dev.data_dir)
    assert not left, "left running: " + "; ".join(" ".join(p.info["cmdline"]) for p in left)
    assert dev.process.returncode == 0, err
    assert "Traceback" not in err
    for marker in CHATTER:
        assert marker not in out, marker
        assert marker not in err, marker
    return out, err


def _assert_banner(dev: Dev, out: str) -> None:
    secrets = json.loads((dev.data_dir / "dev-secrets.json").read_text())
    base = f"http://localhost:{dev.port}"
    lines = out.splitlines()
    assert lines[0] == "wa-cloud dev"
    assert f"  API and webhooks  {base}  (POST {base}/webhook, GET {base}/readyz)" in lines
    assert f"  sandbox Meta      http://{HOST}:{dev.sandbox_port}" in out
    assert f"  admin token       {secrets['WA_ADMIN_TOKEN']}" in lines
    assert f"  data              {dev.data_dir}" in lines


def test_ctrl_c_stops_everything_dev_started(dev: Dev) -> None:
    dev.ctrl_c()
    out, _ = _assert_stopped_cleanly(dev)
    _assert_banner(dev, out)


def test_sigterm_stops_everything_dev_started(dev: Dev) -> None:
    # `kill PID`, a process manager: SIGTERM to the process alone.
    dev.process.send_signal(signal.SIGTERM)
    out, _ = _assert_stopped_cleanly(dev)
    _assert_banner(dev, out)


def test_ctrl_c_while_the_database_starts_stops_it_too(launch: Callable[[], Dev]) -> None:
    # The first start runs initdb, then pg_ctl, for a second or more: a newcomer may well press
    # Ctrl-C then. Sent as soon as the postmaster exists, while pg_ctl still waits for it.
    dev = launch()
    dev.wait_for(
        "a postmaster under the data directory",
        READY_TIMEOUT,
        0.01,
        lambda: any(p.info["name"] == "postgres" for p in _processes_under(dev.data_dir)),
    )
    dev.ctrl_c()
    _assert_stopped_cleanly(dev)
