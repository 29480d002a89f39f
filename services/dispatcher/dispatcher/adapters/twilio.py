"""TwilioNotifier: Twilio's Messages API, its answers mapped to our error classes.

- 201 -> receipt (SID and initial status).
- 429 / code 20429 and 5xx -> TransientError (the request was not processed), honouring
  ``Retry-After`` when present.
- 21211 invalid number, 21614 not a mobile, 21610 opted out (STOP), and any other synchronous
  4xx -> PermanentError with the code.
- Connect errors and pool timeouts: the request never left -> TransientError. A read timeout
  or a dropped connection after the POST left may have sent it -> AmbiguousOutcome.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from common.errors import AmbiguousOutcome, PermanentError, TransientError
from dispatcher.adapters.accounts import TwilioAccounts
from dispatcher.ports import SendReceipt

__all__ = ["TwilioNotifier"]


class _TwilioError(BaseModel):
    code: int | None = None
    message: str = ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


class TwilioNotifier:
    def __init__(self, client: httpx.AsyncClient, accounts: TwilioAccounts) -> None:
        self._client = client
        self._accounts = accounts

    async def send_sms(self, to: str, body: str, *, connection_id: str) -> SendReceipt:
        account = await self._accounts.for_connection(connection_id)
        path = f"/2010-04-01/Accounts/{account.account_sid}/Messages.json"
        form = {
            "To": to,
            "Body": body,
            "MessagingServiceSid": account.messaging_service_sid,
            "StatusCallback": account.status_callback,
        }
        try:
            response = await self._client.post(path, data=form, auth=httpx.BasicAuth(*account.auth))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientError(f"Twilio unreachable: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise AmbiguousOutcome(f"no answer after the send left: {type(exc).__name__}") from exc
        if response.status_code == 201:
            payload = response.json()
            return SendReceipt(provider_id=payload["sid"], status=payload.get("status", ""))
        try:
            error = _TwilioError.model_validate_json(response.content)
        except ValueError:
            error = _TwilioError()
        code = error.code or response.status_code
        if response.status_code == 429 or code == 20429 or response.status_code >= 500:
            raise TransientError(
                f"Twilio answered {response.status_code}",
                code=code,
                retry_after=_retry_after(response),
            )
        raise PermanentError(f"Twilio refused the message: {error.message[:200]}", code=code)
