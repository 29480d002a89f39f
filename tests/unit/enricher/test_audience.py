"""Who hears it: role tiers, opt-out, channel preference and addresses, as pure functions."""

from __future__ import annotations

from uuid import UUID

import pytest

from enricher.audience import Choice, Skip, channel_order, choose, is_opted_out, role_tiers
from enricher.rules import LANGUAGES

A, B, C, D = (UUID(f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-000000000000") for n in "abcd")
FINANCE = ("financ", "administrat", "boekhoud")


def contact(cid: UUID, **fields: object) -> dict[str, object]:
    return {"ID": str(cid), **fields}


BOOKKEEPER = contact(B, FirstName="Bea", JobTitleDescription="Hoofd Boekhouding",
                     Email="bea@klant.example", Mobile="+31 6 11111111")  # fmt: skip
MAIN = contact(C, FirstName="Cas", IsMainContact=True, Mobile="0612345678")
OWN = contact(A, FirstName="Ank", Email="ank@klant.example")
OTHER = contact(D, FirstName="Dirk", JobTitleDescription="Magazijn", Mobile="+31622222222")


@pytest.mark.parametrize(
    ("contacts", "document_contact", "words", "tiers"),
    [
        ([OWN, BOOKKEEPER, MAIN, OTHER], A, FINANCE, [[A], [B], [C]]),
        ([BOOKKEEPER, MAIN, OTHER], A, FINANCE, [[B], [C]]),  # named contact not among them
        ([BOOKKEEPER, MAIN, OTHER], None, (), [[C]]),  # no role: straight to the main contact
        ([OTHER], None, FINANCE, []),  # nobody fits
        ([MAIN, OTHER], None, ("magazijn",), [[D], [C]]),
    ],
)
def test_role_tiers_are_document_contact_then_job_title_then_main_contact(
    contacts, document_contact, words, tiers
):
    found = role_tiers(contacts, document_contact=document_contact, role_words=words,
                       main_contact=None)  # fmt: skip
    assert [[UUID(c["ID"]) for c in tier] for tier in found] == tiers


@pytest.mark.parametrize(
    ("contact_fields", "account_fields", "honour", "out"),
    [
        ({}, {}, False, False),
        ({"IsAnonymised": True}, {}, False, True),
        ({}, {"IsAnonymised": True}, False, True),
        ({"IsMailingExcluded": True}, {}, False, False),
        ({"IsMailingExcluded": True}, {}, True, True),
    ],
)
def test_anonymised_is_always_out_and_mailing_exclusion_only_when_switched_on(
    contact_fields, account_fields, honour, out
):
    assert is_opted_out(contact_fields, account_fields, honour_mailing_exclusion=honour) is out


@pytest.mark.parametrize(
    ("allowed", "preference", "invoicing", "order"),
    [
        (("sms", "email"), None, None, ["sms", "email"]),  # the rule's order
        (("sms", "email"), None, 2, ["email", "sms"]),  # invoiced by e-mail
        (("sms", "email"), None, 8, ["email", "sms"]),  # send & track is e-mail too
        (("sms", "email"), None, 1, ["sms", "email"]),  # paper says nothing
        (("sms", "email"), None, 32, ["sms", "email"]),  # Peppol neither
        (("sms", "email"), None, 1 | 2, ["email", "sms"]),  # paper and e-mail: read as flags
        (("sms", "email"), "sms", 2, ["sms", "email"]),  # the contact's own word wins
        (("email", "sms"), "voice", None, ["email", "sms"]),  # not allowed by the rule
        (("voice",), "email", 2, ["voice"]),
    ],
)
def test_channel_preference_is_contact_then_invoicing_method_then_rule(
    allowed, preference, invoicing, order
):
    assert channel_order(allowed, preference=preference, invoicing_method=invoicing) == order


def pick(contacts, account=None, *, channels=("sms", "email"), document_contact=None,  # type: ignore[no-untyped-def]
         words=FINANCE, preferences=None, honour=False):  # fmt: skip
    return choose(
        contacts,
        account or {"Country": "NL", "Language": "NL"},
        channels=channels,
        document_contact=document_contact,
        role_words=words,
        preference_of=(preferences or {}).get,
        honour_mailing_exclusion=honour,
        region="NL",
        language="en",
        languages=LANGUAGES,
        time_zone_of=lambda country: {"NL": "Europe/Amsterdam", "DE": "Europe/Berlin"}[country],
    )


def test_the_bookkeeper_gets_an_sms_in_e164_in_dutch():
    choice = pick([BOOKKEEPER, MAIN, OTHER])
    assert isinstance(choice, Choice)
    assert (choice.channel, choice.recipient.address) == ("sms", "+31611111111")
    assert (choice.recipient.language, choice.recipient.time_zone) == ("nl", "Europe/Amsterdam")


def test_a_contact_preferring_email_gets_email_and_one_without_email_falls_back_to_sms():
    choice = pick([BOOKKEEPER], preferences={str(B): "email"})
    assert isinstance(choice, Choice)
    assert (choice.channel, choice.recipient.address) == ("email", "bea@klant.example")
    choice = pick([MAIN], preferences={str(C): "email"})
    assert isinstance(choice, Choice)
    assert (choice.channel, choice.recipient.address) == ("sms", "+31612345678")


def test_an_unreachable_document_contact_passes_to_the_next_tier():
    choice = pick([OWN, MAIN], channels=("sms",), document_contact=A)
    assert isinstance(choice, Choice)
    assert choice.recipient.contact_id == C


def test_a_german_contact_reads_a_local_number_as_german_and_gets_german():
    choice = pick([contact(D, IsMainContact=True, Country="DE", Language="DE",
                           Mobile="0151 23456789")])  # fmt: skip
    assert isinstance(choice, Choice)
    assert choice.recipient.address == "+4915123456789"
    assert (choice.recipient.language, choice.recipient.time_zone) == ("de", "Europe/Berlin")


def test_voice_may_ring_a_landline_but_sms_never_does():
    landline = contact(C, IsMainContact=True, Phone="020 123 4567")
    assert isinstance(pick([landline], channels=("sms",)), Skip)
    choice = pick([landline], channels=("voice",))
    assert isinstance(choice, Choice)
    assert choice.recipient.address == "+31201234567"


@pytest.mark.parametrize(
    ("contacts", "account", "honour", "reason", "detail"),
    [
        ([{**MAIN, "IsAnonymised": True}], None, False, "opted_out", "every candidate"),
        ([MAIN], {"IsAnonymised": True, "Country": "NL"}, False, "opted_out", "every candidate"),
        ([{**MAIN, "IsMailingExcluded": True}], None, True, "opted_out", "every candidate"),
        ([contact(C, IsMainContact=True)], None, False, "no_contact", "no mobile number or email"),
        ([OTHER], None, False, "no_contact", "no contact person, role match or main contact"),
    ],
)
def test_nobody_reachable_is_a_skip_with_a_reason_and_what_was_missing(
    contacts, account, honour, reason, detail
):
    skip = pick(contacts, account, honour=honour)
    assert isinstance(skip, Skip)
    assert skip.reason == reason
    assert detail in skip.detail


def test_an_anonymised_document_contact_is_passed_over_for_the_main_contact():
    choice = pick([{**OWN, "IsAnonymised": True}, MAIN], document_contact=A)
    assert isinstance(choice, Choice)
    assert choice.recipient.contact_id == C
