"""Handing messages to the library's mail server and SMS gateway.

Failures are classed as temporary (retry later: the server is down, busy, or answered 4xx) or
permanent (it answered 5xx: this message will never go). Error texts are for staff: they name
the server's answer, never the recipient.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

from holdshelf.settings import MailSettings, SmsSettings


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def send_mail(mail: MailSettings, message: EmailMessage) -> None:
    """Deliver ``message`` to the SMTP server; returns once the server has accepted it."""
    try:
        if mail.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                mail.host, mail.port, timeout=mail.timeout, context=_tls_context(mail)
            )
        else:
            smtp = smtplib.SMTP(mail.host, mail.port, timeout=mail.timeout)
        with smtp:
            if mail.security == "starttls":
                _require(smtp, "starttls", "STARTTLS (check mail.security)")
                smtp.starttls(context=_tls_context(mail))
            if mail.username:
                _require(smtp, "auth", "login (check mail.username and mail.security)")
                smtp.login(mail.username, mail.password)
            refused = smtp.send_message(message)
            if refused:
                code = next(iter(refused.values()))[0]
                raise DeliveryError(
                    f"mail server refused the recipient ({code})", permanent=500 <= code < 600
                )
    except smtplib.SMTPRecipientsRefused as exc:
        code = next(iter(exc.recipients.values()))[0]
        raise DeliveryError(
            f"mail server refused the recipient ({code})", permanent=500 <= code < 600
        ) from None
    except smtplib.SMTPAuthenticationError as exc:  # configuration: fix it, then it retries
        raise DeliveryError(
            f"mail server refused the login ({exc.smtp_code})", permanent=False
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(
            f"mail server answered {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600
        ) from None
    except ssl.SSLCertVerificationError as exc:  # configuration: fix it, then it retries
        raise DeliveryError(
            f"the mail server's certificate is not trusted ({exc.verify_message}; "
            "mail.ca_file names a private CA)",
            permanent=False,
        ) from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise DeliveryError(f"mail server unreachable ({_reason(exc)})", permanent=False) from None


def send_sms_over_http(sms: SmsSettings, number: str, text: str) -> None:
    """POST {"to", "message"} to the gateway. HTTP's own meaning: 5xx, 429 and 408 are worth
    retrying; any other 4xx means this message will never be accepted."""
    request = urllib.request.Request(  # noqa: S310 (the URL is the library's configured gateway)
        sms.url,
        data=json.dumps({"to": number, "message": text}).encode("utf-8"),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {sms.token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=sms.timeout) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        temporary = exc.code >= 500 or exc.code in (408, 429)
        raise DeliveryError(f"SMS gateway answered {exc.code}", permanent=not temporary) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"SMS gateway unreachable ({_reason(exc)})", permanent=False) from None


def _require(smtp: smtplib.SMTP, extension: str, what: str) -> None:
    """A configuration the server cannot serve: say which, and keep the notice for later."""
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn(extension):
        raise DeliveryError(f"the mail server offers no {what}", permanent=False)


def _tls_context(mail: MailSettings) -> ssl.SSLContext:
    """Certificate and host name always verified: against the system's CAs, or the one CA
    a library with a private mail relay names in mail.ca_file."""
    return ssl.create_default_context(cafile=mail.ca_file or None)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return type(exc).__name__
