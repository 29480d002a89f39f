"""Whether a ``Twiml`` parameter is TwiML at all: well-formed XML whose root is ``<Response>``.

Only the envelope is checked, not the verbs: Twilio reports verb problems while the call runs
(12200/12300 in its debugger), which the simulator does not play. The text is parsed with expat
directly and a document type declaration is refused, so no entity is ever expanded (no
"billion laughs", no external entity) without adding defusedxml for one check. Twilio's own
handling of a DOCTYPE in ``Twiml`` is not documented; TwiML never needs one.
"""

from __future__ import annotations

from xml.parsers import expat

__all__ = ["twiml_problem"]


class _Refused(Exception):
    """Raised from a parser callback to stop at a construct the simulator will not parse."""


def twiml_problem(text: str) -> str | None:
    """Why ``text`` is not TwiML, or ``None`` when it is."""
    parser = expat.ParserCreate()
    roots: list[str] = []

    def start(name: str, attributes: dict[str, str]) -> None:
        if not roots:
            roots.append(name)

    def doctype(*_: object) -> None:
        raise _Refused("a document type declaration is not allowed")

    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        return f"not well-formed XML ({exc})"
    except _Refused as exc:
        return str(exc)
    if roots[0] != "Response":  # expat refuses a document without an element
        return f"the root element is <{roots[0]}>, not <Response>"
    return None
