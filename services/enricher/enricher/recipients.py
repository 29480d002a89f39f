"""Choosing who hears about a document, and their number in E.164 (phonenumbers)."""

from __future__ import annotations

from uuid import UUID

import phonenumbers

from common.contracts import Recipient
from enricher.ports import Record

__all__ = ["CONTACT_FIELDS", "pick_sms_recipient", "to_e164"]

CONTACT_FIELDS = [
    "ID",
    "FullName",
    "FirstName",
    "Mobile",
    "BusinessMobile",
    "IsMainContact",
    "Language",
    "Country",
]


def to_e164(raw: str | None, region: str) -> str | None:
    """The number in E.164 if it is a valid mobile (or possibly mobile) number, else None."""
    if not raw or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _mobile(contact: Record, region: str) -> str | None:
    # Exact's Mobile and BusinessMobile overwrite each other on write: read both.
    return to_e164(contact.get("Mobile"), region) or to_e164(contact.get("BusinessMobile"), region)


def pick_sms_recipient(
    contacts: list[Record],
    *,
    preferred: UUID | None,
    main: UUID | None,
    region: str,
    language: str | None,
) -> Recipient | None:
    """The invoice's contact person if reachable by SMS, else the account's main contact, else
    any contact with a mobile number (lowest ID first, so the choice is stable)."""

    def rank(contact: Record) -> tuple[int, str]:
        contact_id = str(contact.get("ID", "")).lower()
        if preferred and contact_id == str(preferred):
            return (0, contact_id)
        if contact.get("IsMainContact") or (main and contact_id == str(main)):
            return (1, contact_id)
        return (2, contact_id)

    for contact in sorted(contacts, key=rank):
        contact_region = contact.get("Country") or region
        address = _mobile(contact, contact_region)
        if address:
            return Recipient(
                contact_id=contact["ID"],
                address=address,
                name=contact.get("FirstName") or contact.get("FullName"),
                language=(contact.get("Language") or language or "").lower() or None,
            )
    return None
