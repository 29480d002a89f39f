"""Request authentication as Twilio and SendGrid do it.

Twilio REST: HTTP Basic with the Account SID and auth token, or an API key SID (``SK...``) and
its secret; the Account SID always stays in the URL path, and must be the configured account.
SendGrid: ``Authorization: Bearer <API key>``. Credentials are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from sim_twilio.errors import SendGridError, TwilioError
from sim_twilio.settings import Settings

__all__ = ["check_account", "check_basic", "check_bearer"]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def check_basic(request: web.Request, settings: Settings) -> None:
    """Raise 401 / 20003 unless the request carries credentials of the configured account."""
    credentials = _basic_credentials(request)
    if credentials is None:
        raise TwilioError(20003)
    username, password = credentials
    accepted = [(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())]
    if settings.twilio_api_key_sid and settings.twilio_api_key_secret:
        accepted.append(
            (settings.twilio_api_key_sid, settings.twilio_api_key_secret.get_secret_value())
        )
    # Evaluate every pair so the time taken does not tell which username was right.
    matches = [_same(username, user) & _same(password, secret) for user, secret in accepted]
    if not any(matches):
        raise TwilioError(20003)


def check_account_resource(request: web.Request, settings: Settings) -> None:
    """A Standard API key may not read the Account resource: 401 / 20003 (the code Twilio
    answers is not documented; 20003 is its "permission denied")."""
    credentials = _basic_credentials(request)
    key = settings.twilio_api_key_sid
    standard = settings.sim_twilio_api_key_type == "standard"
    if key and credentials and credentials[0] == key and standard:
        raise TwilioError(20003)


def check_account(request: web.Request, settings: Settings) -> None:
    """Raise 404 / 20404 unless the path's AccountSid is the configured account."""
    if request.match_info.get("AccountSid") != settings.twilio_account_sid:
        raise TwilioError(20404, path=request.path)


def check_bearer(request: web.Request, settings: Settings) -> None:
    """Raise SendGrid's 401 unless ``Authorization: Bearer <sendgrid_api_key>`` is present."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.sendgrid_api_key.get_secret_value()
    if scheme.lower() != "bearer" or not _same(token.strip(), expected):
        raise SendGridError(401, "The provided authorization grant is invalid, expired, or revoked")
