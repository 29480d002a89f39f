"""The TwiML of a notification call: the message read twice, in the recipient's language.

``<Say>`` takes a ``voice`` and a ``language``; an invalid pair may fail the instruction, so
each supported language has one Amazon Polly voice that speaks it (Twilio's ``<Say>`` page
lists ``Polly.<Name>`` voices; Amazon's list gives Lotte for nl-NL, Amy for en-GB, Marlene for
de-DE, Celine for fr-FR). A language without one is read by the en-GB voice.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from common.errors import PermanentError

__all__ = ["MAX_TWIML", "VOICES", "call_twiml", "locale_of"]

#: Twilio's limit on the ``Twiml`` parameter of a call (reference twilio.md section 7).
MAX_TWIML = 4000

#: Language (ISO 639-1) -> (locale, voice).
VOICES = {
    "nl": ("nl-NL", "Polly.Lotte"),
    "en": ("en-GB", "Polly.Amy"),
    "de": ("de-DE", "Polly.Marlene"),
    "fr": ("fr-FR", "Polly.Celine"),
}


def locale_of(language: str | None) -> tuple[str, str]:
    """(locale, voice) for a recipient language such as ``nl`` or ``de-DE``."""
    return VOICES.get((language or "en")[:2].lower(), VOICES["en"])


def call_twiml(text: str, language: str | None) -> str:
    """``<Response>`` that says ``text``, pauses, and says it again. Raises PermanentError
    when the result is longer than Twilio accepts (a rule whose text is far too long)."""
    locale, voice = locale_of(language)
    say = f"<Say voice={quoteattr(voice)} language={quoteattr(locale)}>{escape(text)}</Say>"
    twiml = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{say}<Pause length="1"/>{say}</Response>'
    )
    if len(twiml) > MAX_TWIML:
        raise PermanentError(
            f"the call's TwiML is {len(twiml)} characters (at most {MAX_TWIML})",
            code="twiml_too_long",
        )
    return twiml
