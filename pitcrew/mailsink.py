"""A local SMTP sink (aiosmtpd) that stores every message it accepts as an `.eml` file.

`pitcrew up` runs it on a free port and points the notify service at it, so development needs no
mail server; the tests and the notify benchmark run the same sink. Run it alone with
`python -m pitcrew.mailsink --port 8025 --dir var/mail`.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MailSink:
    """The aiosmtpd handler: each message's bytes go to `<dir>/<ms>-<id>.eml` (when a dir is given)
    and its arrival time is kept, so a benchmark can measure from event to message."""

    def __init__(self, directory: Path | None = None, keep: bool = True):
        self.directory = directory
        self.keep = keep
        self.messages: list[bytes] = []
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        content: bytes = envelope.original_content or envelope.content
        now = time.time()
        if self.directory is not None:
            # Written aside, then renamed: whoever lists the folder never reads half a message.
            name = f"{int(now * 1000)}-{uuid.uuid4().hex[:8]}"
            part = self.directory / f".{name}.part"
            part.write_bytes(content)
            os.replace(part, self.directory / f"{name}.eml")
        with self.lock:
            self.arrivals.append(now)
            if self.keep:
                self.messages.append(content)
        return "250 Message accepted for delivery"

    def parsed(self) -> list[EmailMessage]:
        with self.lock:
            raw = list(self.messages)
        return [email.message_from_bytes(m, policy=email.policy.default) for m in raw]


def controller(sink: MailSink, host: str, port: int) -> Controller:
    return Controller(sink, hostname=host, port=port, ready_timeout=10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", default="var/mail")
    args = parser.parse_args()
    ctl = controller(MailSink(Path(args.dir), keep=False), args.host, args.port)
    ctl.start()
    print(f"SMTP sink on {args.host}:{args.port}, storing mail under {args.dir}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ctl.stop()


if __name__ == "__main__":
    main()
