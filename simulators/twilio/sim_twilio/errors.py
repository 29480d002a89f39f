"""Twilio and SendGrid error bodies, and the catalogue of codes the simulator answers with.

A 2010-04-01 API error is ``{"code", "message", "more_info", "status"}`` with the HTTP status
repeated in the body (twilio-python reads ``message``, ``code`` and ``details``). SendGrid v3
answers ``{"errors": [{"message", "field", "help"}]}``.

Handlers raise :class:`TwilioError` or :class:`SendGridError`; the request middleware turns
them into responses, so a handler reads top to bottom without early-return plumbing.

Messages are paraphrases of Twilio's error pages, not verbatim copies; clients must branch on
``code`` (and Twilio itself says not to rely on the wording).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["CATALOGUE", "SendGridError", "TwilioError", "sendgrid_body", "twilio_body"]

#: code -> (HTTP status, message template). "confirmed" means read on twilio.com/docs/errors
#: (or in shared/reference/twilio.md); "assumed" means the code fits but was not seen there.
CATALOGUE: dict[int, tuple[int, str]] = {
    # Generic "Bad Request" code (twilio.com/docs/api/errors/400; confirmed), used for a
    # parameter violation that has no more specific code below.
    400: (400, "Invalid parameter: {param}"),
    # Authentication failed (reference section 4; body message seen in captures: "Authenticate").
    20003: (401, "Authenticate"),
    # Not Found (twilio.com/docs/api/errors/20404; confirmed).
    20404: (404, "The requested resource {path} was not found"),
    # Too many concurrent requests; not processed, safe to retry (reference section 4).
    20429: (429, "Too Many Requests"),
    # Internal error answer for injected 5xx (assumed code; Twilio's own 5xx bodies vary).
    20500: (500, "Internal Server Error"),
    # Calls: generic Calls-resource error, documented for missing Url/Twiml/ApplicationSid
    # and bad method values (twilio.com/docs/api/errors/21200; confirmed).
    21200: (400, "Calls resource: {detail}"),
    # Calls: no To (confirmed), invalid Url (confirmed), no From (21213, confirmed).
    21201: (400, "No 'To' number is specified"),
    21205: (400, "Url is not a valid URL: {value}"),
    21213: (400, "No 'From' number is specified"),
    # Invalid To (confirmed, reference section 1).
    21211: (400, "The 'To' number {value} is not a valid phone number."),
    # Invalid From (confirmed only through the test-credentials table: +15005550001 as From).
    21212: (
        400,
        "The 'From' number {value} is not a valid phone number, shortcode, or "
        "alphanumeric sender ID.",
    ),
    # Geo permissions (reference section 4; confirmed).
    21408: (
        400,
        "Permission to send an SMS has not been enabled for the region indicated by "
        "the 'To' number: {value}.",
    ),
    # Body/MediaUrl/ContentSid missing (twilio.com/docs/errors/21602; confirmed).
    21602: (400, "Message body is required."),
    # From/MessagingServiceSid missing (twilio.com/docs/errors/21603; confirmed).
    21603: (400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message"),
    # To missing, also the answer to a JSON body (twilio.com/docs/errors/21604; confirmed).
    21604: (400, "A 'To' phone number is required."),
    # From not owned or not SMS-capable (test-credentials table; assumed wording).
    21606: (
        400,
        "The From phone number {value} is not a valid, SMS-capable inbound phone "
        "number or short code for your account.",
    ),
    # Invalid StatusCallback URL, underscores in the host included (confirmed).
    21609: (400, "Invalid StatusCallback: {value}"),
    # Recipient opted out with STOP (reference sections 4 and 5; confirmed).
    21610: (400, "Attempt to send to unsubscribed recipient"),
    # Sender queue full (reference section 4; confirmed).
    21611: (400, "This 'From' number has exceeded the maximum number of queued messages"),
    # To not reachable from this sender (test-credentials table; assumed wording).
    21612: (
        400,
        "The 'To' phone number: {value}, is not currently reachable using the 'From' "
        "phone number via SMS.",
    ),
    # Not a mobile number (reference section 4; confirmed).
    21614: (400, "'To' number {value} is not a valid mobile number"),
    # Body above 1600 characters (twilio.com/docs/api/errors/21617; confirmed).
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    # Calls: invalid StatusCallbackEvent (twilio.com/docs/api/errors/21626; confirmed).
    21626: (400, "Invalid 'StatusCallbackEvent': {value}"),
    # MessagingServiceSid does not match MG + 32 hex (twilio.com/docs/api/errors/21705).
    21705: (400, "The Messaging Service Sid {value} is invalid."),
    # ValidityPeriod outside 1..36000 or not an integer (twilio.com/docs/api/errors/90007).
    90007: (400, "Invalid validity period value: {value}"),
}


def twilio_body(code: int, status: int, message: str) -> dict[str, Any]:
    """The 2010-04-01 API error body."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioError(Exception):
    """An answer in Twilio's error shape; ``fields`` fill the catalogue's message template."""

    def __init__(
        self,
        code: int,
        *,
        status: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        **fields: Any,
    ) -> None:
        default_status, template = CATALOGUE.get(code, (400, "Error {code}"))
        self.code = code
        #: Seconds for a ``Retry-After`` header (only when a fault asks for one).
        self.retry_after = retry_after
        self.status = status or default_status
        self.message = message or template.format_map({"code": code, **_Blank(fields)})
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The JSON body Twilio would send."""
        return twilio_body(self.code, self.status, self.message)

    def response(self) -> web.Response:
        """A ready JSON response (``WWW-Authenticate`` added on 401, as HTTP asks)."""
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if self.status == 401 else {}
        if self.retry_after is not None:
            headers["Retry-After"] = f"{self.retry_after:g}"
        return web.json_response(self.body(), status=self.status, headers=headers or None)


class _Blank(dict[str, Any]):
    """Template fields that were not given render empty instead of raising."""

    def __missing__(self, key: str) -> str:
        return ""


def sendgrid_body(
    message: str, field: str | None = None, help_url: str | None = None
) -> dict[str, Any]:
    """SendGrid v3's error body with one error."""
    return {"errors": [{"message": message, "field": field, "help": help_url}]}


class SendGridError(Exception):
    """An answer in SendGrid's v3 error shape."""

    def __init__(
        self, status: int, message: str, field: str | None = None, help_url: str | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.field = field
        self.help_url = help_url
        super().__init__(message)

    def response(self) -> web.Response:
        """A ready JSON response."""
        body = sendgrid_body(self.message, self.field, self.help_url)
        return web.json_response(body, status=self.status)
