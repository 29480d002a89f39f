"""Atom XML, Exact's answer to a client that does not ask for JSON.

Without ``Accept: application/json`` Exact answers 200 with an Atom feed (or entry) whose
properties sit in ``content/m:properties`` (reference 5.3). The simulator renders the JSON
payload it would have sent in that shape, so a client that forgets the header fails visibly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "application/atom+xml"
_ATOM = "http://www.w3.org/2005/Atom"
_D = "http://schemas.microsoft.com/ado/2007/08/dataservices"
_M = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
_DATE = re.compile(r"^/Date\((-?\d+)\)/$")

ET.register_namespace("", _ATOM)
ET.register_namespace("d", _D)
ET.register_namespace("m", _M)


def _property(parent: ET.Element, name: str, value: Any) -> None:
    element = ET.SubElement(parent, f"{{{_D}}}{name}")
    if value is None:
        element.set(f"{{{_M}}}null", "true")
    elif isinstance(value, bool):
        element.set(f"{{{_M}}}type", "Edm.Boolean")
        element.text = "true" if value else "false"
    elif isinstance(value, int):
        element.set(f"{{{_M}}}type", "Edm.Int32")
        element.text = str(value)
    elif isinstance(value, float):
        element.set(f"{{{_M}}}type", "Edm.Double")
        element.text = repr(value)
    elif isinstance(value, str) and (match := _DATE.match(value)):
        element.set(f"{{{_M}}}type", "Edm.DateTime")
        moment = datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
        element.text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    else:
        element.text = str(value)


def _entry(parent: ET.Element | None, row: dict[str, Any]) -> ET.Element:
    tag = f"{{{_ATOM}}}entry"
    entry = ET.Element(tag) if parent is None else ET.SubElement(parent, tag)
    metadata = row.get("__metadata", {})
    ET.SubElement(entry, f"{{{_ATOM}}}id").text = metadata.get("uri", "")
    ET.SubElement(
        entry,
        f"{{{_ATOM}}}category",
        {
            "term": metadata.get("type", ""),
            "scheme": "http://schemas.microsoft.com/ado/2007/08/dataservices/scheme",
        },
    )
    content = ET.SubElement(entry, f"{{{_ATOM}}}content", {"type": "application/xml"})
    properties = ET.SubElement(content, f"{{{_M}}}properties")
    for name, value in row.items():
        if name != "__metadata":
            _property(properties, name, value)
    return entry


def _error(payload: dict[str, Any]) -> ET.Element:
    error = ET.Element(f"{{{_M}}}error")
    ET.SubElement(error, f"{{{_M}}}code").text = str(payload["error"].get("code", ""))
    message = payload["error"].get("message", {})
    ET.SubElement(error, f"{{{_M}}}message").text = str(message.get("value", ""))
    return error


def render(payload: Any, url: str) -> tuple[bytes, str]:
    """The XML body and content type for a JSON ``payload`` served at ``url``."""
    if isinstance(payload, dict) and "error" in payload:
        root, kind = _error(payload), "application/xml"
    elif (
        isinstance(payload, dict)
        and isinstance(payload.get("d"), dict)
        and "results" in payload["d"]
    ):
        data = payload["d"]
        root = ET.Element(f"{{{_ATOM}}}feed")
        ET.SubElement(root, f"{{{_ATOM}}}id").text = url
        ET.SubElement(root, f"{{{_ATOM}}}title", {"type": "text"}).text = url.rsplit("/", 1)[-1]
        for row in data["results"]:
            _entry(root, row)
        if "__next" in data:
            ET.SubElement(root, f"{{{_ATOM}}}link", {"rel": "next", "href": data["__next"]})
        kind = CONTENT_TYPE + ";type=feed"
    elif isinstance(payload, dict) and isinstance(payload.get("d"), dict):
        root, kind = _entry(None, payload["d"]), CONTENT_TYPE + ";type=entry"
    else:
        root = ET.Element(f"{{{_D}}}value")
        root.text = str(payload)
        kind = "application/xml"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True), kind + ";charset=utf-8"
