"""``mlc rules check``, ``mlc rules show`` and ``mlc templates check`` on the shipped defaults,
and what they say about broken files and templates."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2
import pytest

from enricher.commands.templates import check
from enricher.texts import Texts
from token_keeper.cli import main

DEFAULT_RULES = Path(str(resources.files("enricher").joinpath("rules", "default.yaml")))


def test_rules_check_passes_the_shipped_default_set(capsys):
    assert main(["rules", "check", str(DEFAULT_RULES)]) == 0
    assert "ok, 8 rules (6 enabled)" in capsys.readouterr().out


def test_rules_check_passes_the_documented_example_connection_file(capsys):
    example = Path(__file__).parents[3] / "docs" / "rules" / "default.yaml"
    assert main(["rules", "check", str(example)]) == 0
    assert "ok, 9 rules (8 enabled)" in capsys.readouterr().out


def test_rules_check_fails_a_bad_file_naming_its_line_and_field(tmp_path, capsys):
    bad = tmp_path / "acme.yaml"
    bad.write_text("settings:\n  language: nl\n  quiet_hours:\n    weekends: '10-18'\n")
    assert main(["rules", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:4: settings.quiet_hours.weekends" in out


def test_rules_show_lists_the_rules_in_force_for_a_connection(tmp_path, capsys, monkeypatch):
    (tmp_path / "acme.yaml").write_text("disable: [invoice-issued]\n")
    monkeypatch.setenv("MLC_ENRICHER_RULES_PATH", str(tmp_path))
    assert main(["rules", "show", "--connection", "acme"]) == 0
    out = capsys.readouterr().out
    assert "off invoice-issued" in out
    assert "on  purchase-order-placed: PurchaseOrders order_placed -> supplier/sales" in out


def test_templates_check_passes_every_default_message_in_four_languages(capsys):
    assert main(["templates", "check"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nok      ") + out.startswith("ok      ") == 6 * 4
    assert "0 error(s)" in out


def loader(text: str) -> jinja2.DictLoader:
    files = {
        f"{m}.{lang}.j2": "{% block subject %}s{% endblock %}{% block text %}t{% endblock %}"
        "{% block email %}e{% endblock %}"
        for m in ("invoice_issued", "invoice_overdue", "order_confirmed", "purchase_order",
                  "purchase_invoice_received", "payment_received")
        for lang in ("nl", "en", "de", "fr")
    }  # fmt: skip
    files["invoice_issued.nl.j2"] = text
    return jinja2.DictLoader(files)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "{% block subject %}s{% endblock %}{% block text %}{{ iban }}{% endblock %}"
            "{% block email %}e{% endblock %}",
            "error   invoice_issued.nl: UndefinedError: 'iban' is undefined",
        ),
        (
            "{% block subject %}s{% endblock %}{% block text %}{% for i in range(400) %}a"
            "{% endfor %}{% endblock %}{% block email %}e{% endblock %}",
            "warning invoice_issued.nl: SMS text can take 3 segments",
        ),
        (
            "{% block subject %}s{% endblock %}{% block text %}\u201cHoi\u201d{% endblock %}"
            "{% block email %}e{% endblock %}",
            "warning invoice_issued.nl: SMS text leaves GSM-7 (UCS-2)",
        ),
    ],
)
def test_templates_check_fails_a_missing_variable_and_warns_on_cost(text, said):
    lines: list[str] = []
    errors, warnings = check(Texts(loader(text)), lines.append)
    assert said in lines
    assert (errors, warnings) == ((1, 0) if said.startswith("error") else (0, 1))
