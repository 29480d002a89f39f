"""``mlc rules check FILE`` and ``mlc rules show [--connection ID]``: the enricher's rules.

``check`` validates a rules file as the enricher would load it (merged with the default set
unless it says ``extends: none``) and prints each error with its file, line and field; exit 1
on any. ``show`` prints the rules in force for a connection under the enricher's
``MLC_ENRICHER_RULES_PATH``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from enricher.rulebook import RuleBook, load_policy
from enricher.rules import Policy, RulesError
from enricher.settings import Settings as EnricherSettings

__all__ = ["add_arguments", "describe", "run"]

Say = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check", "show"])
    parser.add_argument("file", nargs="?", type=Path, help="rules file (check)")
    parser.add_argument("--connection", default="default", help="connection id (show)")


def describe(policy: Policy, say: Say) -> None:
    s = policy.settings
    quiet = s.quiet_hours
    say(f"rules from {policy.source}")
    say(
        f"company {s.company_name or '(the division name in Exact)'}; language {s.language}; "
        f"country {s.country}; time zone {s.time_zone}"
    )
    say(
        "quiet hours "
        + (
            f"weekdays {quiet.weekdays.start:%H:%M}-{quiet.weekdays.end:%H:%M}, "
            f"weekends {quiet.weekends.start:%H:%M}-{quiet.weekends.end:%H:%M}"
            if quiet.enabled
            else "off"
        )
        + f"; IsMailingExcluded {'honoured' if s.honour_mailing_exclusion else 'ignored'}"
    )
    for rule in policy.rules:
        when = ", ".join(
            f"{name}={value}" for name, value in rule.when.model_dump(exclude_none=True).items()
        )
        role = f"/{rule.audience.role}" if rule.audience.role else ""
        say(
            f"  {'on ' if rule.enabled else 'off'} {rule.name}: {'|'.join(rule.entity)} "
            f"{rule.fact}{' if ' + when if when else ''} -> {rule.audience.party}{role} by "
            f"{' > '.join(rule.channels)} at {rule.timing} ({rule.urgency}, {rule.template})"
        )


async def run(settings: object, args: argparse.Namespace, say: Say) -> int:
    try:
        if args.action == "check":
            if args.file is None:
                say("rules check needs a FILE")
                return 2
            policy = load_policy(args.file)
            enabled = sum(rule.enabled for rule in policy.rules)
            say(f"{args.file}: ok, {len(policy.rules)} rules ({enabled} enabled)")
            return 0
        describe(
            RuleBook(EnricherSettings().enricher_rules_path).for_connection(args.connection), say
        )
        return 0
    except RulesError as exc:
        for line in str(exc).splitlines():
            say(line)
        return 1
