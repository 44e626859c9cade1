"""`pitcrew up` as a user runs it: five apps ready, a crashed one started again while the others keep
running, then SIGTERM leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from pitcrew.launcher import Backoff, free_port
from pitcrew.topology import PROCESSES

pytestmark = pytest.mark.e2e


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_pitcrew_up_starts_everything_and_sigterm_stops_everything(tmp_path: Path):
    ports = {name: free_port() for name in PROCESSES}
    env = dict(os.environ)
    env.update({f"PITCREW_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env["PITCREW_NATS_URL"] = f"nats://127.0.0.1:{free_port()}"
    env["PITCREW_VAR_DIR"] = str(tmp_path / "var")
    pitcrew = Path(sys.executable).parent / "pitcrew"
    proc = subprocess.Popen(
        [str(pitcrew), "up", "--var-dir", str(tmp_path / "var")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def said(words: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(words in line for line in lines):
            time.sleep(0.1)
        output = "".join(lines)
        assert words in output, output
        return output

    try:
        output = said("Ctrl-C stops everything", 200)
        assert "Pitcrew is up." in output, output
        assert "export PITCREW_TOKEN=" in output
        children = _children(proc.pid)
        assert len(children) == 2 + len(PROCESSES)  # NATS, the local SMTP sink and every app (the console too)
        with httpx.Client(timeout=5) as client:
            for name, port in ports.items():
                r = client.get(f"http://127.0.0.1:{port}/ready")
                assert r.status_code == 200, (name, r.text)
        # A crash: the launcher starts the budget service again after its backoff; nothing else stops.
        budget = next(pid for pid in children if "services.budget.main" in open(f"/proc/{pid}/cmdline").read())
        os.kill(budget, signal.SIGKILL)
        said("budget restarted", 30)
        assert "budget exited unexpectedly (code -9); restarting it in 1 s" in "".join(lines)
        after = _children(proc.pid)
        assert budget not in after and children - {budget} <= after and len(after) == len(children)
        with httpx.Client(timeout=5) as client:
            deadline = time.monotonic() + 60
            while client.get(f"http://127.0.0.1:{ports['gateway']}/health").json()["status"] != "ok":
                assert time.monotonic() < deadline, "the restarted budget service never became ready"
                time.sleep(0.5)
        children = after
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        time.sleep(0.2)
        alive = [
            pid
            for pid in children
            if os.path.exists(f"/proc/{pid}") and "zombie" not in open(f"/proc/{pid}/status").read()
        ]
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_child_that_keeps_crashing_waits_longer_each_time_and_is_forgiven_once_stable():
    b = Backoff(base=1.0, cap=8.0, stable=60.0)
    assert [b.crashed(now=10.0 + i) for i in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    b.started_at = 100.0
    assert b.crashed(now=159.0) == 8.0  # up for 59 s: still counted as crash-looping
    b.started_at = 200.0
    assert b.crashed(now=260.0) == 1.0 and b.due == 261.0  # up for a minute: a fresh start
