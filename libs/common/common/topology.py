"""Every exchange, queue and routing-key name of the broker, who may use which, and their
idempotent declaration.

Only this module spells out these strings. Each work queue ``<service>.<purpose>`` comes with
delay queues ``<queue>.retry.<tier>`` that dead-letter back into it after their TTL, and a
parking queue ``<queue>.dlq``::

    publisher ──▶ exchange ──binding──▶ work queue ──consumer──┬─ ack
                                           ▲                  ├─ retry ─▶ <queue>.retry.30s ─TTL─┐
                                           └──────────────────┼──────────────────────────────────┘
                                                              └─ dead letter ─▶ <queue>.dlq

Each service connects as its own AMQP user (``mlc-<service>``) whose permissions are derived
here (``permissions``, ``topic_permissions``) from what it consumes (its ``<service>.*``
queues), what it publishes (``PUBLISHES``) and which RPCs it asks (``RPC_CALLERS``). A service
that starts publishing a new routing key must say so in ``PUBLISHES``: the broker refuses the
rest (``ACCESS_REFUSED``), and ``make definitions`` carries the change to the broker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import aio_pika

__all__ = [
    "COMMANDS",
    "DEFAULT_EXCHANGE",
    "EVENTS",
    "PUBLISHES",
    "QUEUES",
    "RETRY_TIERS",
    "RPC",
    "RPC_CALLERS",
    "SERVICES",
    "Permissions",
    "QueueSpec",
    "TopicPermission",
    "access_definitions",
    "declare",
    "declare_for",
    "definitions",
    "dlq_name",
    "password_hash",
    "password_variable",
    "permissions",
    "queue_names",
    "queues_of",
    "retry_queue_name",
    "service_user",
    "tier_label",
    "topic_permissions",
    "with_passwords",
]

#: Facts that happened (topic exchange).
EVENTS = "mlc.events"
#: Requests for work (topic exchange).
COMMANDS = "mlc.commands"
#: RPC requests to token-keeper (direct exchange); replies use direct reply-to.
RPC = "mlc.rpc"
#: The name permissions give the default exchange (``""``): retries, DLQs, RPC replies and
#: every queue declared with ``x-dead-letter-exchange: ""`` need write access to it.
DEFAULT_EXCHANGE = "amq.default"

_EXCHANGE_TYPES = {EVENTS: "topic", COMMANDS: "topic", RPC: "direct"}

#: Every service, each its own AMQP user (``service_user``).
SERVICES: tuple[str, ...] = ("ingress", "enricher", "dispatcher", "auditor", "token-keeper")

#: Retry delays in seconds. RabbitMQ refuses to redeclare a queue with another TTL, so a new
#: delay means a new queue name (the tier label is part of it).
RETRY_TIERS: tuple[int, ...] = (5, 30, 300, 1800)

#: Deliveries of one message before a quorum queue dead-letters it as poison (a consumer that
#: crashes before it can settle). Well above the retry tiers, which republish rather than requeue.
DELIVERY_LIMIT = 10


#: Typed ``x-arguments``: a misspelt key fails the type check instead of the broker.
QueueArguments = TypedDict(
    "QueueArguments",
    {
        "x-queue-type": Literal["quorum", "classic"],
        "x-delivery-limit": int,
        "x-message-ttl": int,
        "x-dead-letter-exchange": str,
        "x-dead-letter-routing-key": str,
    },
    total=False,
)


def tier_label(seconds: int) -> str:
    """``5`` -> ``5s``, ``300`` -> ``5m``, ``1800`` -> ``30m``."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def retry_queue_name(queue: str, seconds: int) -> str:
    """The delay queue that returns a message to ``queue`` after ``seconds``."""
    return f"{queue}.retry.{tier_label(seconds)}"


def dlq_name(queue: str) -> str:
    """The parking queue of ``queue``."""
    return f"{queue}.dlq"


@dataclass(frozen=True)
class QueueSpec:
    """A work queue, what it is bound to, and whether it gets retry tiers and a DLQ."""

    name: str
    bindings: tuple[tuple[str, str], ...]
    retries: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


#: Every work queue of the system, named ``<service>.<purpose>``.
QUEUES: dict[str, QueueSpec] = {
    "enricher.exact-events": QueueSpec("enricher.exact-events", ((EVENTS, "exact.#"),)),
    "dispatcher.sends": QueueSpec(
        "dispatcher.sends",
        # An operator's release of a failed claim travels the same queue as the sends it
        # unblocks; status checks need the same Twilio accounts as the sends.
        (
            (COMMANDS, "notification.send.*"),
            (COMMANDS, "notification.release"),
            (COMMANDS, "notification.check-status"),
        ),
    ),
    "dispatcher.suppressions": QueueSpec(
        "dispatcher.suppressions",
        # What feeds the suppression list: STOP/START replies, SMS that could not be delivered
        # (30004-30006), SendGrid bounces, unsubscribes and spam reports; ``processed`` settles
        # an email whose send had no answer.
        (
            (EVENTS, "twilio.inbound.stop"),
            (EVENTS, "twilio.inbound.start"),
            (EVENTS, "twilio.status.undelivered"),
            (EVENTS, "twilio.status.failed"),
            (EVENTS, "email.event.processed"),
            (EVENTS, "email.event.bounce"),
            (EVENTS, "email.event.dropped"),
            (EVENTS, "email.event.spamreport"),
            (EVENTS, "email.event.unsubscribe"),
            (EVENTS, "email.event.group_unsubscribe"),
            (EVENTS, "email.event.group_resubscribe"),
            # an erasure request: the recipients kept in claims are forgotten
            (EVENTS, "privacy.forget"),
        ),
    ),
    "enricher.suppressions": QueueSpec(
        "enricher.suppressions",
        # A suppressed address ends the reminder chains that would have gone to it.
        ((EVENTS, "suppression.added"), (EVENTS, "privacy.forget")),
    ),
    "auditor.events": QueueSpec(
        "auditor.events",
        (
            (COMMANDS, "notification.send.*"),
            (EVENTS, "notification.*"),
            (EVENTS, "twilio.status.*"),
            (EVENTS, "twilio.inbound.*"),
            (EVENTS, "email.event.*"),
            (EVENTS, "suppression.*"),
            (EVENTS, "privacy.forget"),
        ),
    ),
    "token-keeper.rpc": QueueSpec(
        "token-keeper.rpc",
        (
            (RPC, "token.get"),
            (RPC, "token.refresh"),
            (RPC, "webhook-secret.get"),
            (RPC, "channel-credentials.get"),
            (RPC, "connections.list"),
        ),
        retries=False,
    ),
}


#: RPC routing key -> the services token-keeper answers it for (``serve_rpc`` refuses the
#: rest): the enricher reads Exact with a token and refreshes one Exact refused; the ``mlc``
#: CLI (``mlc ping``, ``mlc subscriptions``) asks for a token where it runs, in token-keeper's
#: place, since it needs token-keeper's MLC_SECRET_KEY; ingress verifies Exact webhooks and
#: the callbacks of a connection's own Twilio/SendGrid account; the dispatcher sends with them.
RPC_CALLERS: dict[str, tuple[str, ...]] = {
    "token.get": ("enricher", "token-keeper"),
    "token.refresh": ("enricher",),
    "webhook-secret.get": ("ingress",),
    "channel-credentials.get": ("ingress", "dispatcher"),
    #: reconciliation's connections and divisions
    "connections.list": ("enricher",),
}

#: What each service publishes on the topic exchanges (binding-key syntax: ``*`` one word,
#: ``#`` any). The broker's topic permissions refuse any other routing key, so the
#: internet-facing ingress cannot forge a suppression or a notification outcome.
PUBLISHES: dict[str, tuple[tuple[str, str], ...]] = {
    # webhooks: Exact (topic and action come from Exact), Twilio and SendGrid
    "ingress": (
        (EVENTS, "exact.#"),
        (EVENTS, "twilio.status.*"),
        (EVENTS, "twilio.inbound.*"),
        (EVENTS, "email.event.*"),
    ),
    # sends; skipped notices; reconciliation's Exact events and payments; mlc contacts forget
    "enricher": (
        (COMMANDS, "notification.send.*"),
        (EVENTS, "notification.skipped"),
        (EVENTS, "exact.#"),
        (EVENTS, "privacy.forget"),
    ),
    # outcomes (outbox), polled delivery statuses, suppressions learnt from the feeds
    "dispatcher": (
        (EVENTS, "notification.*"),
        (EVENTS, "twilio.status.*"),
        (EVENTS, "suppression.*"),
    ),
    # an operator's retry (release, or the document read again) and the status checks
    "auditor": (
        (COMMANDS, "notification.release"),
        (COMMANDS, "notification.check-status"),
        (EVENTS, "exact.#"),
    ),
    # token-keeper only answers, through the default exchange
    "token-keeper": (),
}


def service_user(service: str) -> str:
    """The AMQP user a service connects as in production (``mlc-<service>``)."""
    return f"mlc-{service}"


def queues_of(service: str) -> tuple[str, ...]:
    """The work queues ``service`` consumes: by convention those named ``<service>.*``."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    return tuple(q for q in QUEUES if q.split(".", 1)[0] == service)


def _rpc_keys(service: str) -> tuple[str, ...]:
    return tuple(key for key, callers in RPC_CALLERS.items() if service in callers)


def _published_exchanges(service: str) -> set[str]:
    exchanges = {exchange for exchange, _ in PUBLISHES[service]}
    return exchanges | ({RPC} if _rpc_keys(service) else set())


def _bound_exchanges(service: str) -> set[str]:
    return {exchange for q in queues_of(service) for exchange, _ in QUEUES[q].bindings}


def _exchanges_of(service: str) -> list[str]:
    """The exchanges ``service`` declares: those it publishes to or binds its queues to."""
    used = _published_exchanges(service) | _bound_exchanges(service)
    return [e for e in _EXCHANGE_TYPES if e in used]


def queue_names(service: str) -> list[str]:
    """Every queue of ``service``: its work queues, their retry tiers and DLQs."""
    return [name for q in queues_of(service) for name, _ in _queue_plan(QUEUES[q])]


_REGEX_SPECIALS = frozenset("\\.^$|?*+()[]{}")


def _literal(name: str) -> str:
    """``name`` as a regular expression matching only itself (RabbitMQ's are PCRE)."""
    return "".join("\\" + c if c in _REGEX_SPECIALS else c for c in name)


def _any_of(parts: Iterable[str]) -> str:
    """A whole-name regex matching any of the regexes ``parts``; ``^$`` (nothing) for none."""
    unique = sorted(set(parts))
    return "^(?:" + "|".join(unique) + ")$" if unique else "^$"


def _exactly(names: Iterable[str]) -> str:
    """A permission regex matching exactly ``names``."""
    return _any_of(_literal(n) for n in names)


def _own_queues(service: str) -> list[str]:
    """Regexes matching exactly the queues of ``service`` (``queue_names``), readable:
    ``(?:a|b)(?:\\.dlq|\\.retry\\.(?:5s|30s|5m|30m))?`` for the queues with retry tiers."""
    queues = queues_of(service)
    plain = [_literal(q) for q in queues if not QUEUES[q].retries]
    tiered = [_literal(q) for q in queues if QUEUES[q].retries]
    if not tiered:
        return plain
    tiers = "|".join(tier_label(t) for t in RETRY_TIERS)
    work = tiered[0] if len(tiered) == 1 else "(?:" + "|".join(tiered) + ")"
    return [*plain, f"{work}(?:\\.dlq|\\.retry\\.(?:{tiers}))?"]


def _topic_regex(pattern: str) -> str:
    """A routing-key regex for a binding-key pattern (``*`` one word, ``#`` zero or more)."""
    regex = ""
    for position, word in enumerate(pattern.split(".")):
        separator = "\\." if position else ""
        if word == "#":
            # zero or more words: ``a.#`` also matches ``a`` itself, as a binding would
            regex += f"(?:{separator}.*)?" if position else ".*"
        else:
            regex += separator + ("[^.]+" if word == "*" else _literal(word))
    return regex


@dataclass(frozen=True)
class Permissions:
    """A user's configure/write/read regexes in a vhost (RabbitMQ's ``set_permissions``)."""

    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class TopicPermission:
    """A user's routing-key regexes on one topic exchange (``set_topic_permissions``)."""

    exchange: str
    write: str
    read: str


def permissions(service: str) -> Permissions:
    """What ``service``'s user may do, and nothing more.

    configure: declare its own queues and the exchanges it uses (a fresh broker gets them
    from whichever service starts first). write: publish to the exchanges it uses; bind its
    queues; the default exchange when it republishes to its retry/DLQ queues, declares them
    (their dead-letter exchange is the default one) or replies to RPCs. read: consume its
    queues and bind them to their exchanges. Direct reply-to needs no permission.
    """
    own = _own_queues(service)
    published = _published_exchanges(service)
    default = [DEFAULT_EXCHANGE] if own else []
    return Permissions(
        configure=_any_of([*own, *map(_literal, _exchanges_of(service))]),
        write=_any_of([*own, *map(_literal, [*published, *default])]),
        read=_any_of([*own, *map(_literal, _bound_exchanges(service))]),
    )


def topic_permissions(service: str) -> list[TopicPermission]:
    """Routing keys ``service`` may publish (write) and bind with (read), per topic exchange
    it uses; an exchange it does not use gets none (normal permissions refuse it anyway)."""
    found = []
    for exchange, kind in _EXCHANGE_TYPES.items():
        if kind != "topic" or exchange not in _exchanges_of(service):
            continue
        writes = [_topic_regex(p) for e, p in PUBLISHES[service] if e == exchange]
        binds = [key for q in queues_of(service) for e, key in QUEUES[q].bindings if e == exchange]
        found.append(TopicPermission(exchange, write=_any_of(writes), read=_exactly(binds)))
    return found


def _work_arguments(name: str) -> QueueArguments:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dlq_name(name),
    }


def _retry_arguments(name: str, seconds: int) -> QueueArguments:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": seconds * 1000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": name,
    }


def _queue_plan(spec: QueueSpec) -> list[tuple[str, QueueArguments]]:
    """(name, arguments) of the work queue and its derived queues, in declaration order."""
    if not spec.retries:
        return [(spec.name, QueueArguments({"x-queue-type": "quorum"}))]
    plan = [(dlq_name(spec.name), QueueArguments({"x-queue-type": "quorum"}))]
    plan += [(retry_queue_name(spec.name, t), _retry_arguments(spec.name, t)) for t in RETRY_TIERS]
    plan.append((spec.name, _work_arguments(spec.name)))
    return plan


async def _declare_exchanges(channel: aio_pika.abc.AbstractChannel, names: Iterable[str]) -> None:
    for name in names:
        await channel.declare_exchange(name, _EXCHANGE_TYPES[name], durable=True)


async def _declare_queue(channel: aio_pika.abc.AbstractChannel, spec: QueueSpec) -> None:
    """The work queue, its retry tiers and DLQ, and its bindings."""
    for name, arguments in _queue_plan(spec):
        declared = await channel.declare_queue(name, durable=True, arguments=dict(arguments))  # type: ignore[arg-type]
    # Bound on the declared (robust) queue, so a broker that lost its definitions gets the
    # bindings back when the channel is restored; the work queue is declared last.
    for exchange, key in spec.bindings:
        await declared.bind(exchange, routing_key=key)


async def declare(channel: aio_pika.abc.AbstractChannel, *queues: str) -> None:
    """Declare the exchanges and the named queues (all when none is named). Idempotent.

    Needs a user allowed everything (tests, an operator); a service declares with
    ``declare_for``, within its own permissions."""
    await _declare_exchanges(channel, _EXCHANGE_TYPES)
    for spec in (QUEUES[q] for q in queues) if queues else QUEUES.values():
        await _declare_queue(channel, spec)


async def declare_for(channel: aio_pika.abc.AbstractChannel, service: str) -> None:
    """Declare what ``service`` uses and may declare (``permissions``): the exchanges it
    publishes to or binds to, and its own queues. Idempotent.

    A queue another service consumes is that service's to declare: until it has started (or
    the broker loaded the definitions), a mandatory publish to it is returned unroutable and
    retried like any transient failure."""
    await _declare_exchanges(channel, _exchanges_of(service))
    for queue in queues_of(service):
        await _declare_queue(channel, QUEUES[queue])


def access_definitions(vhost: str, users: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The ``users``, ``permissions`` and ``topic_permissions`` of a definitions document for
    ``users`` (service -> AMQP user name).

    The users carry no password (an empty hash): importing the document leaves each without
    one, so set them after every import, boot-time ``load_definitions`` included
    (``rabbitmqctl change_password mlc-<service> ...``; deploy/rabbitmq/start.sh does it
    for compose)."""
    entries: dict[str, list[dict[str, Any]]] = {
        "users": [],
        "permissions": [],
        "topic_permissions": [],
    }
    for service, user in users.items():
        entries["users"].append(
            {
                "name": user,
                "password_hash": "",
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
                "limits": {},
            }
        )
        granted = permissions(service)
        entries["permissions"].append(
            {
                "user": user,
                "vhost": vhost,
                "configure": granted.configure,
                "write": granted.write,
                "read": granted.read,
            }
        )
        entries["topic_permissions"] += [
            {"user": user, "vhost": vhost, "exchange": t.exchange, "write": t.write, "read": t.read}
            for t in topic_permissions(service)
        ]
    return entries


def definitions(vhost: str = "/") -> dict[str, Any]:
    """The topology and the service users (``mlc-<service>``, no password: see
    ``access_definitions``) with their permissions, as a RabbitMQ definitions document
    (``rabbitmqctl import_definitions``, or ``load_definitions`` at boot)."""
    exchanges = [
        {
            "name": n,
            "vhost": vhost,
            "type": t,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
        for n, t in _EXCHANGE_TYPES.items()
    ]
    queues, bindings = [], []
    for spec in QUEUES.values():
        for name, arguments in _queue_plan(spec):
            queues.append(
                {
                    "name": name,
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": arguments,
                }
            )
        for exchange, key in spec.bindings:
            bindings.append(
                {
                    "source": exchange,
                    "vhost": vhost,
                    "destination": spec.name,
                    "destination_type": "queue",
                    "routing_key": key,
                    "arguments": {},
                }
            )
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
        **access_definitions(vhost, {s: service_user(s) for s in SERVICES}),
    }


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256`` of ``password``:
    base64(salt + sha256(salt + password)), with a random 4-byte salt."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def password_variable(service: str) -> str:
    """Where ``--passwords-from-env`` (and compose) read a service's AMQP password."""
    return "MLC_AMQP_PASSWORD_" + service.upper().replace("-", "_")


def with_passwords(document: dict[str, Any], passwords: dict[str, str]) -> dict[str, Any]:
    """``document`` with each service user's password hash (``passwords``: service -> password).

    Such a document can be loaded at every boot without leaving the users locked out; it is
    then as secret as the passwords are."""
    hashes = {service_user(s): password_hash(p) for s, p in passwords.items()}
    users = [
        {**u, "password_hash": hashes.get(u["name"], u["password_hash"])} for u in document["users"]
    ]
    return {**document, "users": users}


def _main(argv: list[str]) -> int:
    """``python -m common.topology [--passwords-from-env]``: the definitions document, by default
    without passwords (``make definitions``); with the flag, with the hashes of the passwords in
    ``MLC_AMQP_PASSWORD_<SERVICE>`` (every one required), for a broker that loads it at boot."""
    document = definitions()
    if "--passwords-from-env" in argv:
        missing = [
            password_variable(s) for s in SERVICES if not os.environ.get(password_variable(s))
        ]
        if missing:
            print(f"set {', '.join(missing)}", file=sys.stderr)
            return 2
        document = with_passwords(document, {s: os.environ[password_variable(s)] for s in SERVICES})
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m common.topology > definitions.json`
    sys.exit(_main(sys.argv[1:]))
