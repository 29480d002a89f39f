"""The few Exact calls the CLI makes, on a given access token (never a refresh of its own)."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["REGIONS", "ExactApi"]

#: Exact Online's sites per region (reference exact-online.md §2.1).
REGIONS = {
    "nl": "https://start.exactonline.nl",
    "be": "https://start.exactonline.be",
    "uk": "https://start.exactonline.co.uk",
    "de": "https://start.exactonline.de",
    "fr": "https://start.exactonline.fr",
    "es": "https://start.exactonline.es",
    "us": "https://start.exactonline.com",
}


def region_of(base_url: str) -> str:
    for region, url in REGIONS.items():
        if base_url.rstrip("/") == url:
            return region
    return "custom"


class ExactApi:
    def __init__(self, client: httpx.AsyncClient, base_url: str, access_token: str) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(
            method, self._base + path, headers=self._headers, **kwargs
        )
        response.raise_for_status()
        return response

    async def rows(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every row of a collection, following ``__next``."""
        rows: list[dict[str, Any]] = []
        url: str | None = path
        while url:
            body = (await self._send("GET", url.removeprefix(self._base), params=params)).json()
            rows.extend(body["d"].get("results", []))
            url, params = body["d"].get("__next"), None
        return rows

    async def me(self) -> dict[str, Any]:
        rows = await self.rows("/api/v1/current/Me", {"$select": "CurrentDivision,UserID,FullName"})
        return rows[0]

    async def divisions(self, division: int) -> list[dict[str, Any]]:
        return await self.rows(f"/api/v1/{division}/hrm/Divisions", {"$select": "Code,Description"})

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self._send("POST", path, json=body)
        return dict(answer.json()["d"])

    async def delete(self, path: str) -> None:
        await self._send("DELETE", path)
