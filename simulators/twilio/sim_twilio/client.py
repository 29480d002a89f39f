"""``SimTwilioAdmin``: a small async client for the simulator's ``/_sim/`` API.

::

    async with SimTwilioAdmin("http://127.0.0.1:8091") as sim:
        await sim.reject(to="+15005550001", code=21211)
        ...
        assert len(await sim.requests("Messages.json")) == 1

Every method raises ``httpx.HTTPStatusError`` when the simulator answers with an error.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

__all__ = ["SimTwilioAdmin"]


class SimTwilioAdmin:
    """Inject faults into the Twilio simulator and read what it recorded."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def _get(self, endpoint: str, key: str, **params: str) -> list[dict[str, Any]]:
        response = await self._http.get(endpoint, params={k: v for k, v in params.items() if v})
        response.raise_for_status()
        return response.json()[key]  # type: ignore[no-any-return]

    async def requests(
        self, path_suffix: str | None = None, *, method: str | None = None
    ) -> list[dict[str, Any]]:
        """Recorded vendor requests, oldest first, optionally those whose path ends so."""
        return await self._get(
            "/_sim/requests", "requests", path=path_suffix or "", method=method or ""
        )

    async def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        """Created messages with their status and callback attempts."""
        return await self._get("/_sim/messages", "messages", to=to or "")

    async def message(self, sid: str) -> dict[str, Any]:
        """One created message by SID (``KeyError`` if unknown)."""
        for message in await self.messages():
            if message["sid"] == sid:
                return message
        raise KeyError(sid)

    async def calls(self) -> list[dict[str, Any]]:
        """Created calls with their status and callback attempts."""
        return await self._get("/_sim/calls", "calls")

    async def emails(self) -> list[dict[str, Any]]:
        """Mails accepted by ``/v3/mail/send``."""
        return await self._get("/_sim/emails", "emails")

    async def inbound(
        self, *, sender: str, body: str, to: str = "+3197010000000"
    ) -> dict[str, Any]:
        """Play ``sender`` texting ``body`` to our number (posted signed to the inbound URL)."""
        response = await self._http.post(
            "/_sim/inbound", json={"from": sender, "to": to, "body": body}
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def faults(self) -> list[dict[str, Any]]:
        """Faults still waiting to apply."""
        return await self._get("/_sim/faults", "faults")

    async def inject(self, **fault: Any) -> dict[str, Any]:
        """Activate a fault, e.g. ``inject(kind="http_429", count=2)``; returns it with its id."""
        response = await self._http.post("/_sim/faults", json=fault)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def reject(self, *, to: str, code: int = 21211, **extra: Any) -> dict[str, Any]:
        """Make every create to ``to`` fail with Twilio error ``code`` (persistent by default)."""
        return await self.inject(kind="reject", to=to, code=code, **extra)

    async def reset(self) -> None:
        """Forget every resource, request and fault; stop pending callbacks."""
        response = await self._http.post("/_sim/reset")
        response.raise_for_status()

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self._http.aclose()

    async def __aenter__(self) -> SimTwilioAdmin:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
