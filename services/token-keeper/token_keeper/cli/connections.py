"""``mlc connections list``: region, divisions, token age, refresh-token expiry and whether the
connection brings its own Twilio/SendGrid accounts; never a secret.

``mlc connections set-channels ID``: give a connection its own Twilio and SendGrid accounts,
stored sealed like the Exact secrets. A secret given as ``-`` is asked for without echo, so it
stays out of the shell history. Only what is given changes: an omitted option keeps its value,
and ``--clear twilio|sendgrid`` puts a channel back on the install's default account.

``mlc connections set-senders ID``: the caller id of the connection's calls and the From,
From name and Reply-To of its email. The same rule: only what is given changes, and
``--clear voice-from|email-from|email-from-name|email-reply-to`` goes back to the install's.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from common import db
from common.crypto import Sealer
from token_keeper.adapters.store import SENDER_COLUMNS, PostgresConnectionStore
from token_keeper.cli.exact_api import region_of
from token_keeper.settings import Settings

__all__ = ["run"]

#: Exact lets an unused refresh token live this long.
REFRESH_TOKEN_LIFE = timedelta(days=30)
#: What ``--clear`` takes back to the install's, per action.
CHANNELS = ("twilio", "sendgrid")
#: ``set-senders`` option (and ``--clear`` value) -> column
SENDERS = dict(
    zip(
        ("voice-from", "email-from", "email-from-name", "email-reply-to"),
        SENDER_COLUMNS,
        strict=True,
    )
)


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "never"
    seconds = int((now - since).total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "set-channels", "set-senders"])
    parser.add_argument("id", nargs="?", help="connection id (set-channels, set-senders)")
    parser.add_argument("--twilio-account-sid")
    parser.add_argument("--twilio-auth-token", help="'-' to type it without echo")
    parser.add_argument("--twilio-messaging-service-sid")
    parser.add_argument("--sendgrid-api-key", help="'-' to type it without echo")
    parser.add_argument(
        "--sendgrid-webhook-public-key",
        help="the Signed Event Webhook verification key (base64 DER) of that SendGrid account",
    )
    parser.add_argument(
        "--clear",
        action="append",
        choices=[*CHANNELS, *SENDERS],
        default=[],
        help="set-channels: twilio|sendgrid back to the install's default account; "
        "set-senders: a sender option back to the install's sender",
    )
    parser.add_argument("--voice-from", help="set-senders: caller id of calls (E.164)")
    parser.add_argument("--email-from", help="set-senders: From address of email")
    parser.add_argument("--email-from-name", help="set-senders: From name of email")
    parser.add_argument("--email-reply-to", help="set-senders: Reply-To address of email")


def _secret(value: str | None, prompt: str) -> str | None:
    return getpass.getpass(prompt) if value == "-" else value


async def _set_channels(
    store: PostgresConnectionStore, args: argparse.Namespace, say: Callable[[str], None]
) -> int:
    if not args.id:
        say("set-channels needs a connection id")
        return 2
    changes = _channel_changes(args, say)
    if changes is None:
        return 2
    if not await store.change_channel_credentials(args.id, changes):
        say(f"no connection {args.id!r}; run `mlc connect --connection {args.id}` first")
        return 1
    now = await store.channel_credentials(args.id)
    own = [
        name
        for name, has in (
            ("Twilio", now is not None and now.has_twilio),
            ("SendGrid", now is not None and now.sendgrid_api_key),
        )
        if has
    ]
    uses = " and ".join(own) + " of its own" if own else "the default accounts"
    say(f"connection {args.id!r} uses {uses}")
    return 0


def _channel_changes(
    args: argparse.Namespace, say: Callable[[str], None]
) -> dict[str, str | None] | None:
    """The channel settings ``set-channels`` was given (the others are kept), or None after
    saying why the options do not go together."""
    others = [c for c in args.clear if c not in CHANNELS]
    if others:
        say(f"set-channels clears twilio or sendgrid, not {', '.join(others)}")
        return None
    sid, service = args.twilio_account_sid, args.twilio_messaging_service_sid
    token = _secret(args.twilio_auth_token, "Twilio auth token: ")
    key = _secret(args.sendgrid_api_key, "SendGrid API key: ")
    webhook_key = args.sendgrid_webhook_public_key
    if bool(sid) != bool(token) or (service and not sid):
        say(
            "give --twilio-account-sid and --twilio-auth-token together (and the Messaging "
            "Service only with them)"
        )
        return None
    if ("twilio" in args.clear and sid) or ("sendgrid" in args.clear and (key or webhook_key)):
        say("--clear a channel, or give its account: not both")
        return None
    changes: dict[str, str | None] = {}
    if sid or "twilio" in args.clear:
        # the Messaging Service goes with its account: set together (unset: the install's)
        changes.update(
            twilio_account_sid=sid, twilio_auth_token=token, twilio_messaging_service_sid=service
        )
    if "sendgrid" in args.clear:
        changes.update(sendgrid_api_key=None, sendgrid_webhook_public_key=None)
    if key:
        changes["sendgrid_api_key"] = key
    if webhook_key:
        changes["sendgrid_webhook_public_key"] = webhook_key
    if not changes:
        say(
            "nothing to change: give --twilio-account-sid/--twilio-auth-token, "
            "--sendgrid-api-key, --sendgrid-webhook-public-key or --clear twilio|sendgrid"
        )
        return None
    return changes


async def _set_senders(
    store: PostgresConnectionStore, args: argparse.Namespace, say: Callable[[str], None]
) -> int:
    if not args.id:
        say("set-senders needs a connection id")
        return 2
    changes = _sender_changes(args, say)
    if changes is None:
        return 2
    if not await store.change_senders(args.id, changes):
        say(f"no connection {args.id!r}; run `mlc connect --connection {args.id}` first")
        return 1
    now = await store.channel_credentials(args.id)
    own = [
        option
        for option, column in SENDERS.items()
        if now is not None and getattr(now, column) is not None
    ]
    mine = ", ".join(own) + " of its own" if own else "no sender of its own"
    say(f"connection {args.id!r} has {mine}; the others are the install's")
    return 0


def _sender_changes(
    args: argparse.Namespace, say: Callable[[str], None]
) -> dict[str, str | None] | None:
    """The senders ``set-senders`` was given (the others are kept), or None after saying why
    they cannot be used."""
    given = {
        option: value
        for option in SENDERS
        if (value := getattr(args, option.replace("-", "_"))) is not None
    }
    channels = [c for c in args.clear if c in CHANNELS]
    if channels:
        say(f"set-senders clears sender options, not {', '.join(channels)} (set-channels does)")
        return None
    both = [option for option in args.clear if option in given]
    if both:
        say(f"--clear {both[0]}, or give --{both[0]}: not both")
        return None
    voice = given.get("voice-from")
    if voice is not None and not voice.startswith("+"):
        say("--voice-from is an E.164 number (+31...)")
        return None
    if any(
        a is not None and "@" not in a
        for a in (given.get("email-from"), given.get("email-reply-to"))
    ):
        say("--email-from and --email-reply-to are email addresses")
        return None
    changes: dict[str, str | None] = {SENDERS[o]: v for o, v in given.items()}
    changes.update({SENDERS[o]: None for o in args.clear})
    if not changes:
        say(
            "nothing to change: give --voice-from, --email-from, --email-from-name, "
            "--email-reply-to or --clear one of them"
        )
        return None
    return changes


async def run(settings: Settings, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    if settings.secret_key is None:
        raise SystemExit("MLC_SECRET_KEY is required")
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        store = PostgresConnectionStore(pool, Sealer(settings.secret_key))
        if args.action == "set-channels":
            return await _set_channels(store, args, say)
        if args.action == "set-senders":
            return await _set_senders(store, args, say)
        summaries = await store.summaries()
        channels = {s.id: await store.channel_credentials(s.id) for s in summaries}
    if not summaries:
        say("no connections; run `mlc connect`")
        return 0
    now = datetime.now(UTC)
    say(
        f"{'connection':16} {'region':7} {'divisions':20} {'status':16} {'token age':10} "
        f"{'refresh token expires':22} channels"
    )
    for s in summaries:
        expires = (
            (s.refreshed_at + REFRESH_TOKEN_LIFE).date().isoformat() if s.refreshed_at else "-"
        )
        divisions = ",".join(map(str, s.divisions or [s.division]))
        own = channels.get(s.id)
        mine = [
            name
            for name, has in (
                ("twilio", own is not None and own.has_twilio),
                ("sendgrid", own is not None and own.sendgrid_api_key),
            )
            if has
        ]
        say(
            f"{s.id:16} {region_of(s.base_url):7} {divisions:20} {s.status:16} "
            f"{_age(s.refreshed_at, now):10} {expires:22} "
            f"{'own ' + '+'.join(mine) if mine else 'default'}"
        )
    return 0
