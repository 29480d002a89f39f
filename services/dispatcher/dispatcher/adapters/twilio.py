"""TwilioNotifier: Twilio's Messages and Calls APIs, their answers mapped to our error classes.

============================  =================================================================
answer                        class
============================  =================================================================
201                           sent: the SID and initial status are the receipt
429 / 20429, 5xx              TransientError (not processed), honouring ``Retry-After``
21611 (sender queue > 10 h)   TransientError, not before ``SLOW_DOWN_SECONDS``: later, slower
401 / 20003 (credentials)     TransientError at the longest tier (``CREDENTIALS_RETRY_SECONDS``),
                              code ``credentials``: the whole connection's sends wait for the
                              account to be fixed (``mlc ping`` tells), counted in
                              ``mlc_provider_credentials_refused_total``; not a per-message
                              failure
21211 invalid number,         PermanentError with the code (reason ``invalid_number`` /
21614 not a mobile,           ``opted_out`` / ``provider_error``)
21610 opted out (STOP),
any other 4xx
============================  =================================================================
- Connect errors, pool timeouts and errors while writing the request: the request never
  reached Twilio whole -> TransientError. A read timeout or a dropped connection after the
  POST was written may have sent it -> AmbiguousOutcome.

``find_sms`` answers "did Twilio create this message?" for the resolver: it lists the
messages to the number since the claim (``GET Messages.json?To=...&DateSent>=YYYY-MM-DD``;
in the OpenAPI description the query parameter is named ``DateSent>``, so the URL reads
``DateSent>=<day>``) and matches the body. ``find_call`` lists the calls to the number from
the connection's caller id (a call has no body to match: any call created since the claim
is taken as this one; two urgent calls to one number within minutes are not made).

Calls (``send_call``): TwiML ``<Say>`` read twice (``dispatcher.voice``), call progress
callbacks for initiated, ringing, answered and completed, and asynchronous answering machine
detection (``MachineDetection=DetectMessageEnd``, ``AsyncAmd``): its result (``AnsweredBy``)
is posted to the same callback URL, so a voicemail is recorded as such. The same error
classes apply as for messages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel

from common.contracts import Channel, SendNotification
from common.errors import PermanentError, TransientError
from dispatcher.adapters.accounts import TwilioAccount, TwilioAccounts
from dispatcher.adapters.http import HttpClient, Reply, TransportFailure, basic_auth
from dispatcher.adapters.pacing import Pacer
from dispatcher.adapters.transport import CREDENTIALS, CREDENTIALS_RETRY_SECONDS, post_once
from dispatcher.ports import SendReceipt
from dispatcher.voice import call_twiml

__all__ = ["CALL_EVENTS", "TwilioNotifier"]

#: Call progress events a call reports (``StatusCallbackEvent``, repeated once per value).
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")

#: Refusals that say "not now" rather than "never" (reference twilio.md section 4).
_LATER = frozenset({20429, 21611})
#: 21611: the sender's queue holds more than 10 hours of messages; try again this much later.
SLOW_DOWN_SECONDS = 600.0

#: Pages of a lookup read at most (1,000 messages per page): a number that got more since the
#: claim is not a customer's phone; the lookup then answers "unknown" and is retried later.
_MAX_PAGES = 5


class _TwilioError(BaseModel):
    code: int | None = None
    message: str = ""


def _retry_after(response: Reply) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


class TwilioNotifier:
    def __init__(
        self, client: HttpClient, accounts: TwilioAccounts, *, pacer: Pacer | None = None
    ) -> None:
        self._client = client
        self._accounts = accounts
        self._pacer = pacer or Pacer(concurrency=1_000_000)

    async def send(self, command: SendNotification) -> SendReceipt:
        """Send an ``sms`` or ``voice`` command."""
        connection_id = command.source.connection_id
        if command.channel == "voice":
            return await self.send_call(
                command.recipient.address,
                call_twiml(command.content, command.recipient.language),
                connection_id=connection_id,
            )
        if command.channel != "sms":
            raise PermanentError(f"Twilio does not send {command.channel!r}", code="channel")
        return await self.send_sms(
            command.recipient.address, command.content, connection_id=connection_id
        )

    async def find(self, command: SendNotification, *, since: datetime) -> SendReceipt | None:
        connection_id = command.source.connection_id
        if command.channel == "voice":
            return await self.find_call(
                command.recipient.address, since=since, connection_id=connection_id
            )
        return await self.find_sms(
            command.recipient.address, command.content, since=since, connection_id=connection_id
        )

    async def fetch(
        self, provider_id: str, *, connection_id: str, channel: Channel | None
    ) -> SendReceipt:
        resource = "Calls" if channel == "voice" or provider_id.startswith("CA") else "Messages"
        return await self._fetch(resource, provider_id, connection_id=connection_id)

    async def send_sms(self, to: str, body: str, *, connection_id: str) -> SendReceipt:
        account = await self._accounts.for_connection(connection_id)
        form = {
            "To": to,
            "Body": body,
            "MessagingServiceSid": account.messaging_service_sid,
            "StatusCallback": account.status_callback,
        }
        return await self._create(account, "Messages", form)

    async def send_call(self, to: str, twiml: str, *, connection_id: str) -> SendReceipt:
        account = await self._accounts.for_connection(connection_id)
        form: list[tuple[str, str]] = [
            ("To", to),
            ("From", account.voice_from),
            ("Twiml", twiml),
            ("StatusCallback", account.voice_callback),
            ("StatusCallbackMethod", "POST"),
            *(("StatusCallbackEvent", event) for event in CALL_EVENTS),
            ("MachineDetection", "DetectMessageEnd"),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", account.voice_callback),
            ("AsyncAmdStatusCallbackMethod", "POST"),
        ]
        return await self._create(account, "Calls", form)

    async def _create(
        self,
        account: TwilioAccount,
        resource: str,
        form: dict[str, str] | list[tuple[str, str]],
    ) -> SendReceipt:
        path = f"/2010-04-01/Accounts/{account.account_sid}/{resource}.json"
        # a list of pairs repeats a key (StatusCallbackEvent), which a dict cannot
        body = urlencode(list(form.items()) if isinstance(form, dict) else form)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": basic_auth(*account.auth),
        }
        async with self._pacer.turn(account.account_sid, "twilio"):
            response = await post_once(self._client, "Twilio", path, content=body, headers=headers)
        if response.status_code == 201:
            payload = response.json()
            return SendReceipt(provider_id=payload["sid"], status=payload.get("status", ""))
        try:
            error = _TwilioError.model_validate_json(response.content)
        except ValueError:
            error = _TwilioError()
        code = error.code or response.status_code
        if response.status_code == 401 or code == 20003:
            raise TransientError(
                "Twilio refused the account's credentials (20003): fix them, sends wait",
                code=CREDENTIALS,
                retry_after=CREDENTIALS_RETRY_SECONDS,
            )
        if response.status_code == 429 or code in _LATER or response.status_code >= 500:
            wait = _retry_after(response)
            if code == 21611:
                wait = max(wait or 0.0, SLOW_DOWN_SECONDS)
            raise TransientError(
                f"Twilio answered {response.status_code}", code=code, retry_after=wait
            )
        raise PermanentError(f"Twilio refused the request: {error.message[:200]}", code=code)

    async def find_sms(
        self, to: str, body: str, *, since: datetime, connection_id: str
    ) -> SendReceipt | None:
        # Twilio filters DateSent by day (GMT). Whether a message not sent yet (no date_sent)
        # passes that filter is not documented, so a second query by To alone, newest first,
        # also looks at everything created since the claim.
        day = since.astimezone(UTC).date().isoformat()
        queries = [
            {"To": to, "DateSent>": day, "PageSize": "1000"},
            {"To": to, "PageSize": "1000"},
        ]
        return await self._find(
            "Messages", queries, lambda m: m.get("body") == body, since, connection_id
        )

    async def find_call(
        self, to: str, *, since: datetime, connection_id: str
    ) -> SendReceipt | None:
        account = await self._accounts.for_connection(connection_id)
        queries = [{"To": to, "From": account.voice_from, "PageSize": "1000"}]
        return await self._find("Calls", queries, lambda _: True, since, connection_id)

    async def _find(
        self,
        resource: str,
        queries: list[dict[str, str]],
        matches: Callable[[dict[str, Any]], bool],
        since: datetime,
        connection_id: str,
    ) -> SendReceipt | None:
        account = await self._accounts.for_connection(connection_id)
        path = f"/2010-04-01/Accounts/{account.account_sid}/{resource}.json"
        auth = {"Authorization": basic_auth(*account.auth)}
        key = resource.lower()
        for query in queries:
            url: str | None = path
            params: dict[str, str] | None = query
            for _ in range(_MAX_PAGES):
                page = await self._list(url or path, params, auth)
                for item in page.get(key, []):
                    created = _when(item.get("date_created"))
                    if matches(item) and created is not None and created >= since:
                        return SendReceipt(item["sid"], item.get("status", ""))
                url, params = page.get("next_page_uri"), None
                if not url:
                    break
            else:
                raise TransientError(f"too many {key} to this number to prove a non-send")
        return None

    async def fetch_sms(self, provider_id: str, *, connection_id: str) -> SendReceipt:
        return await self._fetch("Messages", provider_id, connection_id=connection_id)

    async def _fetch(self, resource: str, provider_id: str, *, connection_id: str) -> SendReceipt:
        account = await self._accounts.for_connection(connection_id)
        path = f"/2010-04-01/Accounts/{account.account_sid}/{resource}/{provider_id}.json"
        try:
            response = await self._client.get(
                path, headers={"Authorization": basic_auth(*account.auth)}
            )
        except TransportFailure as exc:
            raise TransientError(f"Twilio fetch failed: {type(exc).__name__}") from exc
        if response.status_code == 404:
            raise PermanentError(f"Twilio does not know this {resource[:-1].lower()}", code=20404)
        if response.status_code != 200:
            raise TransientError(
                f"Twilio fetch answered {response.status_code}",
                code=response.status_code,
                retry_after=_retry_after(response),
            )
        item = response.json()
        code = item.get("error_code")
        return SendReceipt(
            item["sid"],
            item.get("status", ""),
            None if code is None else str(code),
            answered_by=item.get("answered_by"),
        )

    async def _list(
        self, url: str, params: dict[str, str] | None, auth: dict[str, str]
    ) -> dict[str, Any]:
        try:
            response = await self._client.get(url, params=params, headers=auth)
        except TransportFailure as exc:
            raise TransientError(f"Twilio lookup failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            # Any refusal of a lookup (even a 401) only means "not known yet": asked again.
            raise TransientError(
                f"Twilio lookup answered {response.status_code}",
                code=response.status_code,
                retry_after=_retry_after(response),
            )
        return response.json()  # type: ignore[no-any-return]


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
