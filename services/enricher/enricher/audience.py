"""Who hears about a document, on which channel, at which address: pure functions.

Exact has no contact type and no channel preference (reference section 6), so both are derived
(docs/adr/0004-notification-rules-as-configuration.md)::

    role        1. the document's own contact person (InvoiceToContactPerson,
                   OrderedByContactPerson, SupplierContact, ContactPerson)
                2. contacts whose JobTitleDescription contains a word of the rule's role
                3. the account's main contact (MainContact, else IsMainContact)
                each tier in turn; within a tier the lowest contact ID first (stable)
    opt-out     an anonymised account or contact (IsAnonymised) is never messaged;
                IsMailingExcluded too when the rules file says so
    channel     1. the contact's preference kept by the connector (mlc contacts prefer)
                2. the account's InvoicingMethod: 2 (e-mail) or 8 (send & track) -> email
                3. the rule's order
                a preferred channel moves first only if the rule allows it
    address     email: Email, else BusinessEmail; sms: Mobile, else BusinessMobile (a mobile
                number); voice: those, else Phone/BusinessPhone; numbers in E.164 read with
                the contact's country, else the account's, else the connection's
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import phonenumbers

from common.contracts import Channel, Recipient
from enricher.ports import Record

__all__ = [
    "CONTACT_FIELDS",
    "Choice",
    "Skip",
    "address_for",
    "channel_order",
    "choose",
    "is_opted_out",
    "language_of",
    "role_tiers",
    "to_e164",
]

CONTACT_FIELDS = [
    "ID",
    "FullName",
    "FirstName",
    "Mobile",
    "BusinessMobile",
    "Phone",
    "BusinessPhone",
    "Email",
    "BusinessEmail",
    "IsMainContact",
    "Language",
    "Country",
    "JobTitleDescription",
    "IsMailingExcluded",
    "IsAnonymised",
]

#: crm/Accounts.InvoicingMethod bits that mean the customer reads invoices by email
#: (2 e-mail, 8 send & track); 1 paper, 4 mailbox and 32 Peppol say nothing about SMS/email.
#: The values are powers of two, so a combination is read as flags (an assumption: the
#: reference lists the single values only).
_EMAIL_INVOICING = 2 | 8
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Choice:
    recipient: Recipient
    channel: Channel


@dataclass(frozen=True)
class Skip:
    reason: str  # "opted_out" | "no_contact"
    detail: str


def _id(contact: Record) -> str:
    return str(contact.get("ID", "")).lower()


def to_e164(raw: object, region: str, *, mobile_only: bool) -> str | None:
    """The number in E.164 if valid (and a mobile number when ``mobile_only``), else None."""
    if not raw or not str(raw).strip():
        return None
    return _e164(str(raw), region.upper(), mobile_only)


# A customer's contacts are read for each of its invoices: parsing a number is the costly
# part of choosing an audience, and its answer depends on nothing else.
@functools.lru_cache(maxsize=4096)
def _e164(raw: str, region: str, mobile_only: bool) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if mobile_only and phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def address_for(contact: Record, channel: Channel, region: str) -> str | None:
    """The contact's address on ``channel``; Exact's field pairs overwrite each other on
    write, so both are read."""
    region = str(contact.get("Country") or region)
    if channel == "email":
        for name in ("Email", "BusinessEmail"):
            value = str(contact.get(name) or "").strip()
            if _EMAIL.match(value):
                return value
        return None
    mobiles = ("Mobile", "BusinessMobile")
    for name in mobiles:
        if number := to_e164(contact.get(name), region, mobile_only=True):
            return number
    if channel == "voice":
        for name in (*mobiles, "Phone", "BusinessPhone"):
            if number := to_e164(contact.get(name), region, mobile_only=False):
                return number
    return None


def role_tiers(
    contacts: Sequence[Record],
    *,
    document_contact: UUID | None,
    role_words: Sequence[str],
    main_contact: UUID | None,
) -> list[list[Record]]:
    """The contacts to try, tier by tier (document contact, role match, main contact)."""
    ordered = sorted(contacts, key=_id)
    own = [c for c in ordered if document_contact and _id(c) == str(document_contact)]
    words = [w.lower() for w in role_words if w]
    by_role = [
        c
        for c in ordered
        if words and any(w in str(c.get("JobTitleDescription") or "").lower() for w in words)
    ]
    main = [
        c
        for c in ordered
        if (main_contact and _id(c) == str(main_contact)) or c.get("IsMainContact")
    ]
    return [tier for tier in (own, by_role, main) if tier]


def is_opted_out(contact: Record, account: Record, *, honour_mailing_exclusion: bool) -> bool:
    if account.get("IsAnonymised") or contact.get("IsAnonymised"):
        return True
    return bool(honour_mailing_exclusion and contact.get("IsMailingExcluded"))


def channel_order(
    allowed: Sequence[Channel], *, preference: Channel | None, invoicing_method: object
) -> list[Channel]:
    """The rule's channels, the preferred one first (contact preference, else email when the
    account is invoiced by email)."""
    first = preference
    method = invoicing_method if isinstance(invoicing_method, int) else 0
    if first is None and method & _EMAIL_INVOICING:
        first = "email"
    order = list(allowed)
    if first in order:
        order.remove(first)
        order.insert(0, first)
    return order


def language_of(contact: Record, account: Record, default: str, supported: Sequence[str]) -> str:
    """The contact's language, else the account's, else ``default`` (``NL``, ``nl-BE`` ->
    ``nl``)."""
    for value in (contact.get("Language"), account.get("Language")):
        code = str(value or "").strip().lower()[:2]
        if code in supported:
            return code
    return default


def choose(
    contacts: Sequence[Record],
    account: Record,
    *,
    channels: Sequence[Channel],
    document_contact: UUID | None,
    role_words: Sequence[str],
    preference_of: Callable[[str], Channel | None],
    honour_mailing_exclusion: bool,
    region: str,
    language: str,
    languages: Sequence[str],
    time_zone_of: Callable[[str], str],
) -> Choice | Skip:
    """The first reachable contact, tier by tier, on its best allowed channel; or why nobody."""
    main = account.get("MainContact")
    tiers = role_tiers(
        contacts,
        document_contact=document_contact,
        role_words=role_words,
        main_contact=UUID(str(main)) if main else None,
    )
    region = str(account.get("Country") or region)
    opted_out = 0
    considered = 0
    for tier in tiers:
        for contact in tier:
            considered += 1
            if is_opted_out(contact, account, honour_mailing_exclusion=honour_mailing_exclusion):
                opted_out += 1
                continue
            order = channel_order(
                channels,
                preference=preference_of(_id(contact)),
                invoicing_method=account.get("InvoicingMethod"),
            )
            for channel in order:
                address = address_for(contact, channel, region)
                if address:
                    country = str(contact.get("Country") or region)
                    return Choice(
                        Recipient(
                            contact_id=contact["ID"],
                            address=address,
                            name=contact.get("FirstName") or contact.get("FullName"),
                            language=language_of(contact, account, language, languages),
                            time_zone=time_zone_of(country),
                        ),
                        channel,
                    )
    if account.get("IsAnonymised") or (considered and opted_out == considered):
        return Skip("opted_out", f"every candidate contact ({considered}) is opted out")
    if not tiers:
        return Skip("no_contact", "the account has no contact person, role match or main contact")
    wanted = {"email": "email address", "sms": "mobile number", "voice": "phone number"}
    missing = " or ".join(wanted[c] for c in channels)
    return Skip("no_contact", f"no {missing} on {considered - opted_out} candidate contact(s)")
