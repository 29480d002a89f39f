"""The enricher's ``mlc`` subcommands (``mlc rules``, ``mlc templates``, ``mlc contacts``),
found by ``mlc`` through the ``mlc.commands`` entry points."""

from common.cli import Command
from enricher.commands import contacts, rules, templates

__all__ = ["CONTACTS", "RULES", "TEMPLATES"]

RULES = Command("check or show the notification rules", rules.add_arguments, rules.run)
TEMPLATES = Command("check the message templates", templates.add_arguments, templates.run)
CONTACTS = Command(
    "a contact's channel preference, or forget a person", contacts.add_arguments, contacts.run
)
