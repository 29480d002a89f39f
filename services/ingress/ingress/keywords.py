"""Opt-out keywords in inbound SMS: what a reply of one word asks for.

Only a message that *is* the keyword counts (Twilio: "STOP please" is not a STOP), compared
without case, surrounding blanks or a trailing full stop or exclamation mark. Twilio's own
English keywords come first; the Dutch, German and French ones are ours, for the countries the
connector's texts are written for. When Twilio's Advanced Opt-Out is on, the webhook carries
``OptOutType`` (STOP / START / HELP) and that wins.

Source: Twilio's opt-out keywords (docs/messaging/tutorials/advanced-opt-out and support
article 223134027): STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT; START, YES,
UNSTOP; HELP, INFO.
"""

from __future__ import annotations

import unicodedata

from common.contracts.twilio import InboundKind

__all__ = ["KEYWORDS", "classify"]

KEYWORDS: dict[InboundKind, frozenset[str]] = {
    "stop": frozenset(
        {
            # Twilio's defaults
            "STOP",
            "STOPALL",
            "UNSUBSCRIBE",
            "CANCEL",
            "END",
            "QUIT",
            "REVOKE",
            "OPTOUT",
            # nl
            "AFMELDEN",
            "UITSCHRIJVEN",
            "STOPPEN",
            # de
            "ABMELDEN",
            "STOPP",
            "ABBESTELLEN",
            # fr (accents folded, so ARRÊT matches ARRET)
            "ARRET",
            "DESABONNER",
            "DESINSCRIRE",
        }
    ),
    "start": frozenset({"START", "YES", "UNSTOP", "AANMELDEN", "ANMELDEN"}),
    "help": frozenset({"HELP", "INFO", "HULP", "HILFE", "AIDE"}),
}
_OPT_OUT_TYPES: dict[str, InboundKind] = {"STOP": "stop", "START": "start", "HELP": "help"}


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.strip().rstrip(".!").strip().upper()


def classify(body: str, opt_out_type: str | None = None) -> tuple[InboundKind, str | None]:
    """(kind, keyword) of an inbound SMS body; ``("message", None)`` for anything else."""
    if opt_out_type and opt_out_type.upper() in _OPT_OUT_TYPES:
        return _OPT_OUT_TYPES[opt_out_type.upper()], opt_out_type.upper()
    word = _fold(body)
    for kind, words in KEYWORDS.items():
        if word in words:
            return kind, word
    return "message", None
