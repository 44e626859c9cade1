#!/usr/bin/env python3
"""Docker HEALTHCHECK: GET /health of the app this container runs.

One image serves five apps on different ports, so the port is found from the
running uvicorn's `--port` argument (PID 1, or a child of an init such as
tini); `pitcrew-healthcheck PORT` skips the search. `--ready` asks /ready
(database and NATS reachable) instead: Compose uses it so that "healthy" means
"can serve". Standard library only, so the check stays cheap.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path


def uvicorn_port() -> int | None:
    """The `--port` of the uvicorn process in this container, if one runs."""
    for cmdline in sorted(Path("/proc").glob("[0-9]*/cmdline"), key=lambda p: int(p.parent.name)):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"uvicorn") for a in args) and b"--port" in args:
            i = args.index(b"--port")
            if i + 1 < len(args) and args[i + 1].isdigit():
                return int(args[i + 1])
    return None


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if a != "--ready"]
    path = "/ready" if "--ready" in argv[1:] else "/health"
    port = int(args[0]) if args else uvicorn_port()
    if port is None:
        print("no uvicorn process with --port found", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2.5) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"127.0.0.1:{port}{path}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
