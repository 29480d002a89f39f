"""SendGridNotifier: SendGrid's v3 ``mail/send``, its answers mapped to our error classes.

Each email has a text part (the rendered template) and an HTML part made from the same text
(``templates/email.html.j2``, autoescaped), the connection's From address, name and Reply-To,
and ``custom_args`` carrying the notification id: SendGrid returns it on every event, which
joins bounces, opens and unsubscribes to the notification (no personal data in it, as SendGrid
keeps custom args). Answers (reference twilio.md section 6):

- 202 -> sent; ``X-Message-Id`` is the provider id (events name it in ``sg_message_id``).
- 429 and 5xx -> TransientError; a 429's ``X-RateLimit-Reset`` (epoch seconds) sets when.
- 401/403 (a key that is wrong or lacks ``mail.send``) -> TransientError ``credentials`` at
  the longest tier: every email of the connection waits until the key is fixed (``mlc ping``
  checks it; ``mlc_provider_credentials_refused_total`` alerts), not a per-message failure.
- 400/413 and other 4xx -> PermanentError for this message.
- Transport errors: as for Twilio, before the request was written whole -> TransientError,
  after -> AmbiguousOutcome.

SendGrid has no API to list what one key sent (the Email Activity API is a paid add-on), so
``find`` cannot prove a send. An email whose send had no answer is settled by its own events
instead: the dispatcher marks it sent when a ``processed`` (or ``dropped``) event names it.
Until ``resolve_after`` has passed without one, ``find`` answers "not known yet"; after
that, the request is taken as lost and the email is sent again.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from common.contracts import Channel, SendNotification
from common.contracts.email import NOTIFICATION_ARG
from common.errors import PermanentError, TransientError
from dispatcher.adapters.accounts import EmailAccounts
from dispatcher.adapters.http import HttpClient, Reply
from dispatcher.adapters.pacing import Pacer
from dispatcher.adapters.transport import CREDENTIALS, CREDENTIALS_RETRY_SECONDS, post_once
from dispatcher.ports import SendReceipt

__all__ = ["SendGridNotifier", "email_body"]

_TEMPLATES = Environment(
    loader=PackageLoader("dispatcher", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    keep_trailing_newline=False,
)


def _html(command: SendNotification) -> str:
    paragraphs = [p.splitlines() for p in command.content.split("\n\n") if p.strip()]
    return _TEMPLATES.get_template("email.html.j2").render(
        subject=command.subject or "",
        language=(command.recipient.language or "en")[:2],
        paragraphs=paragraphs,
    )


def email_body(
    command: SendNotification,
    *,
    from_email: str,
    from_name: str | None,
    reply_to: str | None,
) -> dict[str, Any]:
    """The ``mail/send`` JSON for one command."""
    to: dict[str, str] = {"email": command.recipient.address}
    if command.recipient.name:
        to["name"] = command.recipient.name
    sender: dict[str, str] = {"email": from_email}
    if from_name:
        sender["name"] = from_name
    body: dict[str, Any] = {
        "personalizations": [{"to": [to]}],
        "from": sender,
        "subject": command.subject or command.source.number or command.fact,
        # text/plain must come before text/html
        "content": [
            {"type": "text/plain", "value": command.content},
            {"type": "text/html", "value": _html(command)},
        ],
        "custom_args": {NOTIFICATION_ARG: str(command.notification_id)},
        "categories": [command.fact],
    }
    if reply_to:
        body["reply_to"] = {"email": reply_to}
    return body


def _reset_after(response: Reply) -> float | None:
    value = response.headers.get("X-RateLimit-Reset", "")
    if not value.isdigit():
        return None
    return max(float(value) - time.time(), 1.0)


class SendGridNotifier:
    def __init__(
        self,
        client: HttpClient,
        accounts: EmailAccounts,
        *,
        resolve_after: float,
        pacer: Pacer | None = None,
    ) -> None:
        self._client = client
        self._accounts = accounts
        self._pacer = pacer or Pacer(concurrency=1_000_000)
        self._resolve_after = resolve_after

    async def send(self, command: SendNotification) -> SendReceipt:
        account = await self._accounts.for_connection(command.source.connection_id)
        body = email_body(
            command,
            from_email=account.from_email,
            from_name=account.from_name,
            reply_to=account.reply_to,
        )
        headers = {"Authorization": f"Bearer {account.api_key}"}
        # paced per key (its digest: the key itself is not kept as a name)
        key = hashlib.sha256(account.api_key.encode()).hexdigest()[:16]
        async with self._pacer.turn(key, "sendgrid"):
            response = await post_once(
                self._client, "SendGrid", "/v3/mail/send", json=body, headers=headers
            )
        status = response.status_code
        if status == 202:
            return SendReceipt(response.headers.get("X-Message-Id", ""), "accepted")
        message = _first_error(response)
        if status == 429 or status >= 500:
            raise TransientError(
                f"SendGrid answered {status}", code=status, retry_after=_reset_after(response)
            )
        if status in (401, 403):
            raise TransientError(
                f"SendGrid refused the key ({status}): {message}",
                code=CREDENTIALS,
                retry_after=CREDENTIALS_RETRY_SECONDS,
            )
        raise PermanentError(f"SendGrid refused the email: {message}", code=status)

    async def find(self, command: SendNotification, *, since: datetime) -> SendReceipt | None:
        waited = (datetime.now(UTC) - since).total_seconds()
        if waited < self._resolve_after:
            raise TransientError("no SendGrid event for this email yet")
        return None

    async def fetch(
        self, provider_id: str, *, connection_id: str, channel: Channel | None
    ) -> SendReceipt:
        raise PermanentError("SendGrid cannot be asked for one email's status", code="no_fetch")


def _first_error(response: Reply) -> str:
    try:
        errors = response.json().get("errors") or [{}]
        return str(errors[0].get("message", ""))[:200]
    except (ValueError, AttributeError, IndexError):
        return ""
