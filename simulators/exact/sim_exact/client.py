"""``SimExactAdmin``: an async client of the simulator's ``/_sim/`` API, for tests and the demo.

    async with SimExactAdmin("http://127.0.0.1:8090") as sim:
        invoice = await sim.create_invoice(amount=121.0, description="Broodleveringen")
        await sim.issue_invoice(invoice["InvoiceID"])
        deliveries = await sim.webhooks()

Records use Exact's field names. Every method raises ``httpx.HTTPStatusError`` on a non-2xx.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

__all__ = ["SimExactAdmin"]


class SimExactAdmin:
    """One long-lived HTTP client bound to a simulator's base URL."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def __aenter__(self) -> SimExactAdmin:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    # records -------------------------------------------------------------------------------

    async def seed(self) -> dict[str, Any]:
        """Seeded ids: division, account_id, contact_id, second_contact_id, user_id, client_id."""
        return await self._call("GET", "/_sim/seed")  # type: ignore[no-any-return]

    async def create_account(self, **fields: Any) -> dict[str, Any]:
        """Create an account (Exact fields, optional ``Division``); fires ``Accounts`` Update."""
        return await self._call("POST", "/_sim/accounts", json=fields)  # type: ignore[no-any-return]

    async def create_contact(self, **fields: Any) -> dict[str, Any]:
        """Create a contact (Exact fields such as ``Account``, ``Mobile``); fires Update."""
        return await self._call("POST", "/_sim/contacts", json=fields)  # type: ignore[no-any-return]

    async def create_invoice(
        self,
        amount: float,
        *,
        account_id: str | None = None,
        currency: str = "EUR",
        description: str | None = None,
        division: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create a draft (Status 10) sales invoice; ``fields`` are extra Exact fields."""
        body: dict[str, Any] = {"amount": amount, "currency": currency, **fields}
        for name, value in (
            ("account_id", account_id),
            ("description", description),
            ("division", division),
        ):
            if value is not None:
                body[name] = value
        return await self._call("POST", "/_sim/invoices", json=body)  # type: ignore[no-any-return]

    async def create_invoices(self, invoices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create many drafts in one request; each item is a body as for ``create_invoice``
        (``amount`` required; ``account_id``, ``currency``, ``description``, ``division``)."""
        body = {"invoices": invoices}
        return await self._call("POST", "/_sim/invoices/bulk", json=body)  # type: ignore[no-any-return]

    async def issue_invoices(self, invoice_ids: list[str]) -> list[dict[str, Any]]:
        """Issue many drafts at once (an invoicing run): their webhooks fire together."""
        body = {"ids": invoice_ids}
        return await self._call("POST", "/_sim/invoices/bulk/issue", json=body)  # type: ignore[no-any-return]

    async def edit_invoice(self, invoice_id: str, **fields: Any) -> dict[str, Any]:
        return await self._call("PATCH", f"/_sim/invoices/{invoice_id}", json=fields)  # type: ignore[no-any-return]

    async def issue_invoice(self, invoice_id: str) -> dict[str, Any]:
        """Status 50 and the next InvoiceNumber; fires Update."""
        return await self._call("POST", f"/_sim/invoices/{invoice_id}/issue")  # type: ignore[no-any-return]

    async def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The invoice's receivable becomes fully paid (no webhook: Exact has no such topic)."""
        return await self._call("POST", f"/_sim/invoices/{invoice_id}/pay")  # type: ignore[no-any-return]

    async def delete_invoice(self, invoice_id: str) -> None:
        """Remove the invoice; fires Delete."""
        await self._call("DELETE", f"/_sim/invoices/{invoice_id}")

    async def create(self, entity: str, **fields: Any) -> dict[str, Any]:
        """Create a record of any entity set by name (``SalesOrders``, ``PurchaseOrders``...)."""
        return await self._call("POST", f"/_sim/entities/{entity}", json=fields)  # type: ignore[no-any-return]

    async def update(self, entity: str, key: str, **fields: Any) -> dict[str, Any]:
        return await self._call("PATCH", f"/_sim/entities/{entity}/{key}", json=fields)  # type: ignore[no-any-return]

    async def delete(self, entity: str, key: str) -> None:
        await self._call("DELETE", f"/_sim/entities/{entity}/{key}")

    # control -------------------------------------------------------------------------------

    async def inject(self, **fault: Any) -> dict[str, Any]:
        """Queue a fault: ``kind`` (http_500, http_503, http_429, http_401, latency), ``count``,
        ``path_contains``, ``seconds``."""
        return await self._call("POST", "/_sim/faults", json=fault)  # type: ignore[no-any-return]

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/_sim/faults")

    async def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move simulated time forward; returns ``{"now", "epoch_ms"}``."""
        return await self._call("POST", "/_sim/clock", json={"advance_seconds": seconds})  # type: ignore[no-any-return]

    async def subscribe(
        self, division: int, callback_url: str, topic: str, *, validate: bool = False
    ) -> dict[str, Any]:
        """Subscribe without a token (``validate`` sends the empty POST first)."""
        body = {
            "division": division,
            "callback_url": callback_url,
            "topic": topic,
            "validate": validate,
        }
        return await self._call("POST", "/_sim/subscriptions", json=body)  # type: ignore[no-any-return]

    async def unsubscribe(self, subscription_id: str) -> None:
        await self._call("DELETE", f"/_sim/subscriptions/{subscription_id}")

    async def reset(self, *, tokens: bool = False, data: bool = False) -> None:
        """Clear faults, records and counters; ``tokens`` and ``data`` go back to the start."""
        await self._call("POST", "/_sim/reset", json={"tokens": tokens, "data": data})

    # records of what happened ------------------------------------------------------------------

    async def requests(self, **filters: Any) -> list[dict[str, Any]]:
        """API calls answered (filters: ``path_contains``, ``division``, ``status``)."""
        return await self._call("GET", "/_sim/requests", params=filters)  # type: ignore[no-any-return]

    async def webhooks(self) -> list[dict[str, Any]]:
        """Webhook deliveries: topic, key, action, status, attempts, outcome, body."""
        return await self._call("GET", "/_sim/webhooks")  # type: ignore[no-any-return]

    async def stats(self) -> dict[str, Any]:
        """Calls and 429s per division, errors per endpoint, token chains, webhook outcomes."""
        return await self._call("GET", "/_sim/stats")  # type: ignore[no-any-return]
