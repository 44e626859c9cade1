"""`pitcrew up` as a user runs it: five apps ready, then SIGTERM leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pitcrew.launcher import free_port
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
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        output = "".join(lines)
        assert "Pitcrew is up." in output, output
        assert "export PITCREW_TOKEN=" in output
        children = _children(proc.pid)
        assert len(children) == 1 + len(PROCESSES)  # NATS and every app (the console too)
        with httpx.Client(timeout=5) as client:
            for name, port in ports.items():
                r = client.get(f"http://127.0.0.1:{port}/ready")
                assert r.status_code == 200, (name, r.text)
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
