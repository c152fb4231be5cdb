"""The invitation mail: a plain-text and an HTML body carrying the tenant's status link.

Sent over SMTP with the standard library, in a thread so the event loop never waits on a mail
server. `SMTP_URL` is `smtp://user:pass@host:port` (STARTTLS when the server offers it) or
`smtps://...` (TLS from the first byte). Without `SMTP_URL` the mail is logged instead, so a
dev set-up still shows the link. The URL holds a password: it is never logged, and neither is
any error text that might repeat it.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from wa_cloud.config import Settings
from wa_cloud.errors import WaCloudError
from wa_cloud.pages import render

logger = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 15.0
# 587 is mail submission (the port that takes AUTH); 465 is submission over implicit TLS.
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


class MailNotSent(WaCloudError):
    """The mail server could not be reached or refused the mail. `refused` is True when it
    refused the recipient: the caller's input, not the server's state, is what to fix."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpServer:
    """Raises ValueError with a message that never repeats the URL (it holds a password)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("SMTP_URL must look like smtp://user:pass@host:port or smtps://...")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError("SMTP_URL has a port that is not a number") from None
    return SmtpServer(
        host=parts.hostname,
        port=port,
        implicit_tls=parts.scheme == "smtps",
        # Userinfo is percent-encoded in a URL: a password may hold '@' or ':' that way.
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def compose_invitation(
    settings: Settings, *, to: str, tenant_name: str, link: str, expires_at: datetime
) -> EmailMessage:
    context = {
        "tenant_name": tenant_name,
        "link": link,
        "expires": expires_at.strftime("%Y-%m-%d %H:%M"),
    }
    sender = settings.mail_from or f"wa-cloud <no-reply@{_domain(settings.base_url)}>"
    message = EmailMessage()
    # A header cannot hold a line break (the email package refuses it): fold any whitespace.
    message["Subject"] = f"{' '.join(tenant_name.split())}: your WhatsApp status page"
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=_domain(settings.base_url))
    message.set_content(render("invite.txt", **context))
    message.add_alternative(render("invite.html", **context), subtype="html")
    return message


async def send_invitation(settings: Settings, message: EmailMessage, link: str) -> None:
    """Send `message`, or log it (with its link) when no SMTP server is configured."""
    if not settings.smtp_url:
        logger.info(
            "invitation mail logged, not sent: SMTP_URL is not set",
            extra={"to": message["To"], "subject": message["Subject"], "link": link},
        )
        return
    try:
        server = parse_smtp_url(settings.smtp_url)
    except ValueError as exc:
        logger.error("SMTP_URL is not valid", extra={"reason": str(exc)})
        raise MailNotSent("The mail server is not configured correctly.") from None
    try:
        await asyncio.to_thread(_deliver, server, message)
    except smtplib.SMTPRecipientsRefused:
        logger.warning("mail recipient refused", extra={"smtp_host": server.host})
        raise MailNotSent("The mail server refused the recipient.", refused=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        # The class name only: server replies and socket errors can echo what they were sent.
        logger.warning(
            "mail not sent",
            extra={"smtp_host": server.host, "smtp_port": server.port, "error": type(exc).__name__},
        )
        raise MailNotSent("The mail server could not be reached or refused the mail.") from None
    logger.info("invitation mail sent", extra={"smtp_host": server.host})


def _deliver(server: SmtpServer, message: EmailMessage) -> None:
    """Blocking: runs in a worker thread."""
    tls = ssl.create_default_context()
    client: smtplib.SMTP
    if server.implicit_tls:
        client = smtplib.SMTP_SSL(
            server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS, context=tls
        )
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS)
    with client:
        client.ehlo()
        encrypted = server.implicit_tls
        if not encrypted and client.has_extn("starttls"):
            client.starttls(context=tls)
            client.ehlo()  # the capabilities (AUTH among them) may change under TLS
            encrypted = True
        if server.username is not None:
            if not encrypted:
                # Allowed (a relay on the same host is common) but worth an operator's look.
                logger.warning("SMTP login without TLS", extra={"smtp_host": server.host})
            client.login(server.username, server.password or "")
        client.send_message(message)


def _domain(base_url: str) -> str:
    return urlsplit(base_url).hostname or "localhost"
