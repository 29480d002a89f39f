"""Webhook subscriptions and signed deliveries, as Exact sends them.

A delivery body is compact JSON with ``Content`` first and ``HashCode`` last::

    {"Content":{"Topic":..,"ClientId":..,"Division":..,"Action":"Update"|"Delete","Key":..,
    "ExactOnlineEndpoint":"<public_url>/api/v1/<div>/<service>/<Entity>(guid'<key>')",
    "EventCreatedOn":"YYYY-MM-DDTHH:MM:SS.fff"},"HashCode":"<UPPER HEX HMAC-SHA256>"}

The HashCode covers the raw Content bytes, keyed with the webhook secret (reference 1.2).
``EventCreatedOn`` has no offset; the simulator writes simulated UTC (Exact's zone is
unconfirmed). Each delivery runs as its own task, so deliveries may arrive out of order, and
is retried briefly on a non-2xx answer or a connection error.

Creating a subscription through the API first sends an empty POST (``Content-Length: 0``) to
the callback URL; a non-2xx answer fails the create (reference 1.3).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import structlog

from common.signatures import exact_hashcode
from sim_exact.clock import Clock
from sim_exact.entities import WEBHOOK_SUBSCRIPTIONS, EntitySet
from sim_exact.metrics import SimMetrics
from sim_exact.store import Row, Store

__all__ = ["MAX_DELIVERIES", "RETRY_DELAYS", "Delivery", "Webhooks", "webhook_body"]

#: Seconds to wait before the second, third, ... attempt of a delivery.
RETRY_DELAYS: Sequence[float] = (0.5, 2.0, 5.0)
#: Oldest delivery records are dropped beyond this.
MAX_DELIVERIES = 20_000

_log = structlog.get_logger("sim_exact.webhooks")


def webhook_body(
    secret: str,
    *,
    topic: str,
    client_id: str,
    division: int,
    action: str,
    key: str,
    endpoint: str,
    event_created_on: str,
) -> bytes:
    """The exact bytes Exact posts: compact Content in the observed field order + HashCode."""
    content = json.dumps(
        {
            "Topic": topic,
            "ClientId": client_id,
            "Division": division,
            "Action": action,
            "Key": key,
            "ExactOnlineEndpoint": endpoint,
            "EventCreatedOn": event_created_on,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    hashcode = str(exact_hashcode(secret, content))
    return b'{"Content":' + content + b',"HashCode":"' + hashcode.encode() + b'"}'


@dataclass
class Delivery:
    """One webhook sent (or being sent) to one subscription."""

    id: int
    subscription_id: str
    division: int
    topic: str
    action: str
    key: str
    callback_url: str
    event_created_on: str
    body: str
    status: int | None = None
    attempts: int = 0
    outcome: str = "pending"  # pending | delivered | failed
    error: str | None = None


class Webhooks:
    """Finds the subscriptions a change concerns and delivers to each."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        metrics: SimMetrics,
        client_id: str,
        secret: str,
        public_url: str,
        attempts: int,
        timeout_seconds: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._client_id = client_id
        self._secret = secret
        self._public_url = public_url.rstrip("/")
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self.deliveries: deque[Delivery] = deque(maxlen=MAX_DELIVERIES)

    # lifecycle -----------------------------------------------------------------------------

    def open(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def close(self) -> None:
        """Cancel deliveries still in flight and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._session = None

    # subscriptions -------------------------------------------------------------------------

    def subscribe(
        self,
        division: int,
        callback_url: str,
        topic: str,
        *,
        user: dict[str, Any],
        description: str | None = None,
    ) -> Row:
        """Store a subscription (no validation POST; see ``validate``)."""
        return self._store.insert(
            division,
            WEBHOOK_SUBSCRIPTIONS,
            {
                "CallbackURL": callback_url,
                "Topic": topic,
                "ClientID": self._client_id,
                "Description": description,
                "IsInstant": False,
                "UserID": user["UserID"],
                "Creator": user["UserID"],
                "CreatorFullName": user["FullName"],
            },
        )

    async def validate(self, callback_url: str) -> str | None:
        """Send the empty validation POST; None when it got a 2xx, else what went wrong."""
        try:
            async with self._client().post(
                callback_url, data=b"", headers={"Content-Length": "0"}, timeout=self._timeout
            ) as response:
                await response.read()
                return None if 200 <= response.status < 300 else str(response.status)
        except (aiohttp.ClientError, TimeoutError):
            return "An error occurred while sending the request."

    # deliveries ----------------------------------------------------------------------------

    def changed(self, division: int, entity: EntitySet, key: Any, action: str) -> None:
        """Store listener: deliver to every subscription of ``entity``'s topic in ``division``."""
        if entity.topic is None or not self._store.has_division(division):
            return
        subscriptions = [
            row
            for row in self._store.rows(division, WEBHOOK_SUBSCRIPTIONS)
            if row["Topic"] == entity.topic
        ]
        if not subscriptions:
            return
        created_on = self._clock.now_dt().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        endpoint = entity.record_url(self._public_url, division, key)
        body = webhook_body(
            self._secret,
            topic=entity.topic,
            client_id=self._client_id,
            division=division,
            action=action,
            key=str(key),
            endpoint=endpoint,
            event_created_on=created_on,
        )
        for subscription in subscriptions:
            delivery = Delivery(
                id=next(self._ids),
                subscription_id=subscription["ID"],
                division=division,
                topic=entity.topic,
                action=action,
                key=str(key),
                callback_url=subscription["CallbackURL"],
                event_created_on=created_on,
                body=body.decode(),
            )
            self.deliveries.append(delivery)
            task = asyncio.get_running_loop().create_task(self._deliver(delivery, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def records(self) -> list[dict[str, Any]]:
        return [asdict(delivery) for delivery in self.deliveries]

    def summary(self) -> dict[str, int]:
        outcomes = {"pending": 0, "delivered": 0, "failed": 0}
        for delivery in self.deliveries:
            outcomes[delivery.outcome] += 1
        return outcomes

    async def _deliver(self, delivery: Delivery, body: bytes) -> None:
        delays = [0.0, *RETRY_DELAYS][: self._attempts]
        for delay in delays:
            if delay:
                await asyncio.sleep(delay)
            delivery.attempts += 1
            try:
                async with self._client().post(
                    delivery.callback_url,
                    data=body,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                    timeout=self._timeout,
                ) as response:
                    await response.read()
                    delivery.status = response.status
                    delivery.error = None
                    if 200 <= response.status < 300:
                        delivery.outcome = "delivered"
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                delivery.error = type(exc).__name__
        else:
            delivery.outcome = "failed"
        self._metrics.webhook_deliveries.labels(delivery.topic, delivery.outcome).inc()
        _log.info(
            "webhook_delivered" if delivery.outcome == "delivered" else "webhook_failed",
            topic=delivery.topic,
            action=delivery.action,
            status=delivery.status,
            attempts=delivery.attempts,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("webhook delivery is not running (app not started)")
        return self._session
