"""E-mail over STARTTLS with credentials, against a real aiosmtpd that requires both."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pitcrew.launcher import free_port
from pitcrew.mailsink import MailSink
from services.notify.mail import Mailer


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def message() -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "notify@pitcrew.local", "ann@example.com", "hello"
    m.set_content("hi")
    return m


@pytest.fixture()
def secure_server(tmp_path):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = MailSink(None)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"notify" and auth_data.password == b"s3cret"
        return AuthResult(success=ok)

    port = free_port()
    ctl = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    ctl.start()
    yield port, cert, sink
    ctl.stop()


async def test_starttls_and_credentials(secure_server):
    port, cert, sink = secure_server
    good = Mailer(f"smtp://notify:s3cret@127.0.0.1:{port}?starttls=required&cafile={cert}", timeout=10)
    assert await good.send([message()]) == [None]
    assert len(sink.messages) == 1
    wrong = Mailer(f"smtp://notify:nope@127.0.0.1:{port}?starttls=required&cafile={cert}", timeout=3)
    (error,) = await wrong.send([message()])
    assert error is not None  # refused (aiosmtpd answers a failed login slowly: a timeout or a 535)
    untrusted = Mailer(f"smtp://notify:s3cret@127.0.0.1:{port}?starttls=required", timeout=3)
    (error,) = await untrusted.send([message()])
    assert error and "certificate" in error.lower()
    clear = Mailer(f"smtp://notify:s3cret@127.0.0.1:{port}?starttls=false", timeout=3)
    (error,) = await clear.send([message()])
    assert error is not None  # the server refuses credentials (and mail) in clear
    assert len(sink.messages) == 1
