"""Twilio's magic test numbers for the Messages API, honoured by the simulator for any account.

Sources (checked for this module):

- ``From=+15005550006`` passes all validation: confirmed on twilio.com
  (https://twilio.com/docs/messaging/tutorials/automate-testing).
- The tables below match the "Test SMS messages" section that
  https://www.twilio.com/docs/iam/test-credentials links to. The stored copy of that page was
  cut off before the tables, so they were read from two secondary copies that agree
  (twilio-iam-remake.readme.io "Test inputs for SMS", and the hexdocs package
  ``twilio_magic_values``, which cites the twilio.com anchor). Status: corroborated, not read
  on twilio.com itself.

With Twilio's real test credentials every other ``From`` fails with 21606; the simulator does
not copy that rule, since it also stands in for live credentials.
"""

from __future__ import annotations

__all__ = ["MAGIC_FROM", "MAGIC_TO", "POOL_SENDER"]

#: The always-valid magic sender (confirmed); also the sender a Messaging Service "picks".
POOL_SENDER = "+15005550006"

#: To -> error code.
MAGIC_TO: dict[str, int] = {
    "+15005550001": 21211,  # invalid phone number
    "+15005550002": 21612,  # Twilio cannot route to this number
    "+15005550003": 21408,  # no international (geo) permission
    "+15005550004": 21610,  # blocked for the account (opted out / blacklisted)
    "+15005550009": 21614,  # incapable of receiving SMS (not a mobile number)
}

#: From -> error code.
MAGIC_FROM: dict[str, int] = {
    "+15005550001": 21212,  # invalid phone number
    "+15005550007": 21606,  # not owned by the account or not SMS-capable
    "+15005550008": 21611,  # outgoing SMS queue full
}
