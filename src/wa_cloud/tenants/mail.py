"""The invitation mail: a plain-text and an HTML body carrying the tenant's status link (and
the link that signs the business in to the console).

Sent over SMTP with the standard library, in a thread so the event loop never waits on a mail
server. `SMTP_URL` is `smtps://user:pass@host:port` (TLS from the first byte),
`smtp://user:pass@host:port` (STARTTLS, required: a server that does not offer it gets
nothing, neither the password nor the link), or `smtp+insecure://...` (STARTTLS when offered,
plain text otherwise: a relay on a trusted network). The link is a bearer credential for a
week: without `SMTP_URL` a dev set-up logs the mail, link included, so developers can open
it, while production logs only that mail is not configured. The URL holds a password: it is
never logged, and neither is any error text that might repeat it.
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
from uuid import UUID

from wa_cloud.config import Settings
from wa_cloud.errors import WaCloudError
from wa_cloud.pages import render

logger = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 15.0
# 587 is mail submission (the port that takes AUTH); 465 is submission over implicit TLS.
DEFAULT_PORTS = {"smtp": 587, "smtps": 465, "smtp+insecure": 587}


class MailNotSent(WaCloudError):
    """The mail server could not be reached or refused the mail. `refused` is True when it
    refused the recipient: the caller's input, not the server's state, is what to fix."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class MailNotConfigured(MailNotSent):
    """Production without `SMTP_URL`: nothing was sent, and the link was not logged."""


class _StartTlsUnavailable(Exception):
    """`smtp://` and the server does not offer STARTTLS."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    # smtp://: STARTTLS or nothing. Only smtp+insecure:// may fall back to plain text.
    require_starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpServer:
    """Raises ValueError with a message that never repeats the URL (it holds a password)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(
            "SMTP_URL must look like smtp://user:pass@host:port, smtps://... or smtp+insecure://..."
        )
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError("SMTP_URL has a port that is not a number") from None
    return SmtpServer(
        host=parts.hostname,
        port=port,
        implicit_tls=parts.scheme == "smtps",
        require_starttls=parts.scheme == "smtp",
        # Userinfo is percent-encoded in a URL: a password may hold '@' or ':' that way.
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def compose_invitation(
    settings: Settings,
    *,
    to: str,
    tenant_name: str,
    link: str,
    expires_at: datetime,
    console_link: str | None = None,
) -> EmailMessage:
    context = {
        "tenant_name": tenant_name,
        "link": link,
        "console_link": console_link,
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


def compose_rescan(
    settings: Settings, *, to: str, tenant_name: str, number: str, link: str
) -> EmailMessage:
    """A web-session number's session ended and only a new scan brings it back."""
    sender = settings.mail_from or f"wa-cloud <no-reply@{_domain(settings.base_url)}>"
    message = EmailMessage()
    name = " ".join(tenant_name.split())
    message["Subject"] = f"{name}: scan the QR code again for +{number}"
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=_domain(settings.base_url))
    message.set_content(
        f"Hello {name},\n\nThe WhatsApp session of +{number} ended and needs a new scan.\n"
        f"Open your status page and scan the QR code with that phone (WhatsApp > Linked "
        f"devices):\n\n{link}\n"
    )
    return message


async def send_invitation(
    settings: Settings, message: EmailMessage, link: str, *, tenant_id: UUID | None = None
) -> None:
    """Send `message`. Without an SMTP server: in dev, log it with its link; in production,
    log only that mail is not configured and raise `MailNotConfigured` (the link opens a
    tenant's page for a week: it never goes into production logs)."""
    if not settings.smtp_url:
        if settings.dev:
            logger.info(
                "invitation mail logged, not sent: SMTP_URL is not set",
                extra={"to": message["To"], "subject": message["Subject"], "link": link},
            )
            return
        logger.warning(
            "invitation mail not sent: mail is not configured (SMTP_URL)",
            extra={"tenant_id": None if tenant_id is None else str(tenant_id)},
        )
        raise MailNotConfigured("No mail server is configured (SMTP_URL): nothing was sent.")
    try:
        server = parse_smtp_url(settings.smtp_url)
    except ValueError as exc:
        logger.error("SMTP_URL is not valid", extra={"reason": str(exc)})
        raise MailNotSent("The mail server is not configured correctly.") from None
    try:
        await asyncio.to_thread(_deliver, server, message)
    except _StartTlsUnavailable:
        logger.error(
            "mail not sent: the SMTP server offers no STARTTLS (use smtps://, or "
            "smtp+insecure:// on a trusted network)",
            extra={"smtp_host": server.host, "smtp_port": server.port},
        )
        raise MailNotSent(
            "The mail server does not offer TLS (STARTTLS); nothing was sent."
        ) from None
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
        if not encrypted and server.require_starttls:
            # Before AUTH and before the message: the password and the link stay unsent.
            raise _StartTlsUnavailable
        if server.username is not None:
            if not encrypted:
                # smtp+insecure:// says so explicitly; still worth an operator's look.
                logger.warning("SMTP login without TLS", extra={"smtp_host": server.host})
            client.login(server.username, server.password or "")
        client.send_message(message)


def _domain(base_url: str) -> str:
    return urlsplit(base_url).hostname or "localhost"
