"""E-mail: multipart (plain text and HTML) messages from Jinja2 templates, sent over SMTP (aiosmtplib).

`PITCREW_NOTIFY_SMTP_URL` says where: `smtp://host:port` (STARTTLS when the server offers it),
`smtp://...?starttls=required` (refuse to send in clear), `smtps://host:465` (TLS from the first
byte), with `user:password@` for servers that want credentials and `cafile=/path/ca.pem` for a
server whose certificate a private CA signed. Each message carries its
notification id as Message-ID, so a receiver can tell a resend (after a crash between the server's
"250 OK" and our commit) from a new message.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import jinja2

TEMPLATES = Path(__file__).with_name("templates")


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    use_tls: bool
    start_tls: bool | None  # None: upgrade when the server offers it
    username: str | None
    password: str | None
    cafile: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"PITCREW_NOTIFY_SMTP_URL must be smtp://host:port or smtps://host:port, not {url!r}")
        query = parse_qs(parts.query)
        starttls = (query.get("starttls") or [""])[0].lower()
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            use_tls=parts.scheme == "smtps",
            start_tls=None if starttls in ("", "auto") else starttls in ("1", "true", "yes", "required"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=(query.get("cafile") or [""])[0] or None,
        )


_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable in the raw message, safe for any line length
# Headers stay on one line up to RFC 5322's 998 characters: compat32 folds a long unbroken value
# (an unsubscribe URL) before its first character, and receivers then read a leading space.
_POLICY = compat32.clone(max_line_length=998)
_WIRE = _POLICY.clone(linesep="\r\n")


def _header(value: str) -> str:
    """A header value on one line (compat32 would write a CR or LF as given: header injection)."""
    value = " ".join(value.splitlines())
    return value if value.isascii() else Header(value, "utf-8").encode()


def _text(body: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype, policy=_POLICY)
    part.set_payload(body, _UTF8)
    return part


def compose(
    env: jinja2.Environment,
    *,
    sender: str,
    to: str,
    name: str,
    message_id: str,
    context: dict[str, Any],
    event_id: str | None = None,
) -> Message:
    """The message: plain text and HTML alternatives. Built with the compat32 MIME classes, which
    take headers as given (the modern EmailMessage parses each header it is handed: 4-11 ms a
    message, more than sending it cost)."""
    msg = MIMEMultipart("alternative", policy=_POLICY)
    msg["From"] = sender
    msg["To"] = email.utils.formataddr((" ".join(name.splitlines()), _header(to)), charset="utf-8")
    msg["Subject"] = _header(context["title"])
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<{message_id}@pitcrew.notify>"
    if event_id:
        msg["X-Pitcrew-Event-Id"] = _header(event_id)  # the event that caused it (a digest or summary has none)
    if context.get("unsubscribe"):
        msg["List-Unsubscribe"] = _header(f"<{context['unsubscribe']}>")
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.attach(_text(env.get_template("message.txt.j2").render(**context), "plain"))
    msg.attach(_text(env.get_template("message.html.j2").render(**context), "html"))
    return msg


class Mailer:
    """Sends a batch over one SMTP connection; each message's own outcome (None or the error)."""

    def __init__(self, url: str, timeout: float):
        self.target = SmtpTarget.parse(url)
        self.timeout = timeout

    async def send(self, messages: list[Message]) -> list[str | None]:
        t = self.target
        client = aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            use_tls=t.use_tls,
            start_tls=t.start_tls,
            username=t.username,
            password=t.password,
            cert_bundle=t.cafile,
            timeout=self.timeout,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            return [f"SMTP connection failed (connect, STARTTLS or login): {exc}"] * len(messages)
        out: list[str | None] = []
        try:
            for m in messages:
                sender, recipient = email.utils.parseaddr(m["From"])[1], email.utils.parseaddr(m["To"])[1]
                if not recipient:
                    out.append("no e-mail address")
                    continue
                try:
                    # Flattened here with our policy: aiosmtplib's own would fold long headers again.
                    await client.sendmail(sender, [recipient], m.as_bytes(policy=_WIRE))
                    out.append(None)
                except aiosmtplib.SMTPResponseException as exc:
                    out.append(f"SMTP {exc.code}: {exc.message}")
                except (aiosmtplib.SMTPException, OSError) as exc:
                    out.extend([f"SMTP connection lost: {exc}"] * (len(messages) - len(out)))
                    break
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        return out
