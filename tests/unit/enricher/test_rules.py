"""Rules as configuration: the default set loads, a connection's file extends it, and every
error names the file, the line and the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from enricher.documents import KINDS
from enricher.rulebook import RuleBook, load_policy
from enricher.rules import Conditions, RulesError, Timing

ACME = """\
version: 1
settings:
  company_name: Acme B.V.
  quiet_hours: {enabled: false}
disable: [invoice-overdue-call]
rules:
  - name: invoice-issued
    entity: SalesInvoices
    fact: invoice_issued
    audience: {party: customer, role: finance}
    channels: [email]
    template: invoice_issued
  - name: big-order
    entity: SalesOrders
    fact: order_confirmed
    when: {amount_at_least: 10000, currencies: [EUR]}
    audience: {party: customer}
    channels: [voice, email]
    urgency: urgent
    template: order_confirmed
"""


def write(tmp_path: Path, text: str, name: str = "acme.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_default_set_has_every_promised_rule_and_only_two_are_off():
    policy = load_policy(None)
    by_name = {rule.name: rule for rule in policy.rules}
    assert set(by_name) == {
        "invoice-issued",
        "invoice-overdue-email",
        "invoice-overdue-sms",
        "invoice-overdue-call",
        "sales-order-confirmed",
        "purchase-order-placed",
        "purchase-invoice-received",
        "payment-thanks",
    }
    assert {n for n, r in by_name.items() if not r.enabled} == {
        "purchase-invoice-received",
        "payment-thanks",
    }
    assert by_name["purchase-order-placed"].audience.party == "supplier"
    assert by_name["purchase-order-placed"].channels == ("email", "sms")
    assert [str(by_name[f"invoice-overdue-{s}"].timing) for s in ("email", "sms", "call")] == [
        "DueDate + 3 days",
        "DueDate + 10 days",
        "DueDate + 20 days",
    ]
    assert by_name["invoice-overdue-call"].when.amount_at_least == Decimal(500)


def test_a_connection_file_overrides_settings_replaces_and_adds_rules_and_switches_them(tmp_path):
    policy = load_policy(write(tmp_path, ACME))
    by_name = {rule.name: rule for rule in policy.rules}
    assert policy.settings.company_name == "Acme B.V."
    assert policy.settings.quiet_hours.enabled is False
    assert policy.settings.language == "nl"  # not given: the default's
    assert by_name["invoice-issued"].channels == ("email",)
    assert by_name["invoice-overdue-call"].enabled is False
    assert by_name["big-order"].urgency == "urgent"
    assert [r.name for r in policy.matching("SalesOrders", "order_confirmed")] == [
        "sales-order-confirmed",
        "big-order",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  - name: x\n    entity: SalesInvoices\n    fact: invoice_issued\n"
            "    audience: {party: customer}\n    channels: [sms, fax]\n    template: t\n",
            ":6: rules.0.channels.1: Input should be 'sms', 'email' or 'voice'",
        ),
        (
            "settings:\n  language: nl\n  time_zone: Mars/Olympus\n",
            ":3: settings.time_zone: Value error, unknown time zone 'Mars/Olympus'",
        ),
        (
            "rules:\n  - name: x\n    entity: PurchaseOrders\n    fact: order_placed\n"
            "    audience: {party: customer}\n    channels: [email]\n    template: t\n",
            ":2: rules.0: Value error, PurchaseOrders goes to a supplier, not a customer",
        ),
        (
            "rules:\n  - name: x\n    entity: SalesOrders\n    fact: invoice_issued\n"
            "    audience: {party: customer}\n    channels: [email]\n    template: t\n",
            "SalesOrders has no fact 'invoice_issued' (it has order_confirmed)",
        ),
        (
            "rules:\n  - name: x\n    entity: SalesInvoices\n    fact: invoice_issued\n"
            "    audience: {party: customer}\n    channels: [email]\n    template: t\n"
            "    timing: OrderDate + 3 days\n",
            "SalesInvoices has no date 'OrderDate' (it has DueDate, InvoiceDate)",
        ),
        ("settings:\n  quiet_hours:\n    weekdays: '21:00-08:00'\n", ":3: settings.quiet_hours"),
        ("rules: [\n", "not valid YAML"),
        ("colour: blue\n", ":1: colour: Extra inputs are not permitted"),
    ],
)
def test_an_invalid_file_is_refused_naming_file_line_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as error:
        load_policy(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_a_role_missing_from_settings_and_an_unknown_disable_are_refused(tmp_path):
    bad_role = ACME.replace("audience: {party: customer}", "audience: {party: customer, role: x}")
    with pytest.raises(RulesError, match=r"role 'x' is not in settings\.roles"):
        load_policy(write(tmp_path, bad_role))
    with pytest.raises(RulesError, match="disable/enable name no rule: nope"):
        load_policy(write(tmp_path, "disable: [nope]\n"))


def test_a_rule_naming_a_template_that_does_not_exist_is_refused(tmp_path):
    typo = ACME.replace("template: order_confirmed", "template: order_confirmation")
    with pytest.raises(RulesError, match=r"big-order: template 'order_confirmation' has no text"):
        load_policy(write(tmp_path, typo))


def test_a_rules_directory_gives_each_connection_its_file_and_a_reload_keeps_the_last_good(
    tmp_path,
):
    write(tmp_path, ACME, "acme.yaml")
    book = RuleBook(tmp_path)
    assert book.for_connection("acme").settings.company_name == "Acme B.V."
    assert book.for_connection("other").settings.company_name is None  # the default set
    write(tmp_path, ACME.replace("Acme B.V.", "Acme Holding"), "acme.yaml")
    assert book.reload() == []
    assert book.for_connection("acme").settings.company_name == "Acme Holding"
    write(tmp_path, "rules: [\n", "acme.yaml")
    errors = book.reload()
    assert len(errors) == 1
    assert "acme.yaml" in errors[0]
    assert book.for_connection("acme").settings.company_name == "Acme Holding"


def test_a_broken_file_stops_the_start(tmp_path):
    write(tmp_path, "version: 2\n", "acme.yaml")
    with pytest.raises(RulesError, match=r"acme\.yaml:1: version"):
        RuleBook(tmp_path)


NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DUE = datetime(2026, 12, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "due"),
    [
        ("now", NOW),
        ("DueDate", DUE),
        ("DueDate + 3 days", DUE + timedelta(days=3)),
        ("DueDate + 1 day", DUE + timedelta(days=1)),
        ("DueDate - 2 days", DUE - timedelta(days=2)),
        ("DueDate + 90 seconds", DUE + timedelta(seconds=90)),
        ("DueDate+7days", DUE + timedelta(days=7)),
    ],
)
def test_timing_is_now_or_a_document_date_plus_an_offset(text, due):
    doc = {"DueDate": f"/Date({int(DUE.timestamp() * 1000)})/"}
    assert Timing.parse(text).due(doc, NOW) == due


def test_a_timing_on_a_document_without_the_date_is_not_due_and_nonsense_is_refused():
    assert Timing.parse("DueDate + 3 days").due({"DueDate": None}, NOW) is None
    with pytest.raises(ValueError, match="is not 'now'"):
        Timing.parse("next tuesday")


INVOICE = KINDS["SalesInvoices"]


@pytest.mark.parametrize(
    ("conditions", "doc", "account", "holds"),
    [
        ({}, {"AmountFC": 1}, {}, True),
        ({"amount_at_least": 500}, {"AmountFC": 499.99}, {}, False),
        ({"amount_at_least": 500}, {"AmountFC": 500}, {}, True),
        ({"amount_below": 100}, {"AmountFC": 100}, {}, False),
        ({"currencies": ["eur"]}, {"AmountFC": 1, "Currency": "EUR"}, {}, True),
        ({"currencies": ["USD"]}, {"AmountFC": 1, "Currency": "EUR"}, {}, False),
        ({"journals": ["70"]}, {"Journal": "70 "}, {}, True),
        ({"journals": ["70"]}, {"Journal": "71"}, {}, False),
        ({"account_classifications": ["ABC"]}, {}, {"Classification1": "abc"}, True),
        ({"account_classifications": ["ABC"]}, {}, {"Classification1": None}, False),
    ],
)
def test_rule_conditions_on_amount_currency_journal_and_classification(
    conditions, doc, account, holds
):
    assert Conditions(**conditions).hold(INVOICE, doc, account) is holds
