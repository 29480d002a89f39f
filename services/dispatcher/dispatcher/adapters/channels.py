"""ChannelNotifier: one Notifier over the providers, chosen by the command's channel."""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import Counter, Histogram

from common.contracts import Channel, SendNotification
from common.errors import AmbiguousOutcome, PermanentError, TransientError
from dispatcher.adapters.transport import CREDENTIALS
from dispatcher.ports import Notifier, SendReceipt

__all__ = ["ChannelNotifier"]

_OUTCOMES: tuple[tuple[type[Exception], str], ...] = (
    (TransientError, "transient"),
    (PermanentError, "permanent"),
    (AmbiguousOutcome, "ambiguous"),
)


class ChannelNotifier:
    """``sms`` and ``voice`` through Twilio, ``email`` through SendGrid."""

    def __init__(
        self,
        providers: dict[str, Notifier],
        *,
        latency: Histogram | None = None,
        credentials_refused: Counter | None = None,
    ) -> None:
        self._providers = providers
        self._latency = latency
        self._credentials_refused = credentials_refused

    def _for(self, channel: str | None) -> Notifier:
        provider = self._providers.get(channel or "sms")
        if provider is None:
            raise PermanentError(f"no provider sends {channel!r}", code="channel_unsupported")
        return provider

    async def send(self, command: SendNotification) -> SendReceipt:
        provider = self._for(command.channel)
        started, outcome = time.perf_counter(), "sent"
        try:
            return await provider.send(command)
        except Exception as exc:
            outcome = next((o for kind, o in _OUTCOMES if isinstance(exc, kind)), "error")
            if getattr(exc, "code", None) == CREDENTIALS and self._credentials_refused:
                self._credentials_refused.labels(channel=command.channel).inc()
            raise
        finally:
            if self._latency is not None:
                self._latency.labels(channel=command.channel, outcome=outcome).observe(
                    time.perf_counter() - started
                )

    async def find(self, command: SendNotification, *, since: datetime) -> SendReceipt | None:
        return await self._for(command.channel).find(command, since=since)

    async def fetch(
        self, provider_id: str, *, connection_id: str, channel: Channel | None
    ) -> SendReceipt:
        return await self._for(channel).fetch(
            provider_id, connection_id=connection_id, channel=channel
        )
