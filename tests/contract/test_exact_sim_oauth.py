"""The Exact simulator's token endpoint follows Exact's rules (reference section 2).

Rotation on every refresh, "Old refresh token used." with a broken chain, the 570-second
too-early rule with its Reason header, 30-day expiry of an unused refresh token, no
Authorization header, ``expires_in`` as a string, and the authorization-code grant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from sim_exact.client import SimExactAdmin
from sim_exact.server import RunningSimulator, running
from sim_exact.settings import Settings

pytestmark = pytest.mark.contract

DAY = 86_400


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    # A frozen clock: only advance_clock moves time, so the 570 s and 30-day edges are exact.
    async with running(Settings(http_port=0, clock_speed=0)) as running_sim:
        yield running_sim


@pytest_asyncio.fixture
async def http(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        yield client


@pytest_asyncio.fixture
async def admin(sim: RunningSimulator) -> AsyncIterator[SimExactAdmin]:
    async with SimExactAdmin(sim.url) as client:
        yield client


def _client(sim: RunningSimulator) -> dict[str, str]:
    settings = sim.state.settings
    return {
        "client_id": settings.exact_client_id,
        "client_secret": settings.exact_client_secret.get_secret_value(),
    }


def _initial(sim: RunningSimulator) -> str:
    return sim.state.settings.exact_refresh_token.get_secret_value()


async def refresh(
    http: httpx.AsyncClient, sim: RunningSimulator, token: str, **extra: Any
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, **_client(sim)}
    return await http.post("/api/oauth2/token", data=data, **extra)


async def me(http: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await http.get(
        "/api/v1/current/Me",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
    )


async def chain_stats(admin: SimExactAdmin) -> dict[str, Any]:
    return (await admin.stats())["token_chains"][0]  # type: ignore[no-any-return]


async def test_a_refresh_returns_a_rotated_pair_with_expires_in_as_a_string(http, sim):
    response = await refresh(http, sim, _initial(sim))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["expires_in"] == "600"
    assert body["token_type"] == "bearer"
    assert body["refresh_token"] != _initial(sim)
    assert (await me(http, body["access_token"])).status_code == 200


async def test_an_access_token_dies_after_600_seconds(http, sim, admin):
    access = (await refresh(http, sim, _initial(sim))).json()["access_token"]
    await admin.advance_clock(599)
    assert (await me(http, access)).status_code == 200

    await admin.advance_clock(1)

    response = await me(http, access)
    assert response.status_code == 401
    assert response.json()["error"]["message"]["value"]


async def test_reusing_a_rotated_refresh_token_is_refused_and_breaks_the_chain(http, sim, admin):
    first = (await refresh(http, sim, _initial(sim))).json()

    reused = await refresh(http, sim, _initial(sim))

    assert reused.status_code == 401
    assert reused.json() == {
        "error": "unauthorized_client",
        "error_description": "Old refresh token used.",
    }
    # The chain is broken: its current tokens die too, only a new consent helps.
    assert (await me(http, first["access_token"])).status_code == 401
    await admin.advance_clock(600)
    assert (await refresh(http, sim, first["refresh_token"])).status_code == 400
    stats = await chain_stats(admin)
    assert stats["broken"] is True
    assert stats["old_token_reuse"] == 1
    assert stats["refreshes"] == 1


async def test_refreshing_sooner_than_570_seconds_after_the_last_issue_is_too_early(
    http, sim, admin
):
    pair = (await refresh(http, sim, _initial(sim))).json()

    early = await refresh(http, sim, pair["refresh_token"])

    assert early.status_code == 400
    assert early.json() == {
        "error": "access_denied",
        "error_description": "Rate limit exceeded: access_token not expired",
    }
    assert early.headers["Reason"].startswith("TooEarlyToRefreshTokens:")
    await admin.advance_clock(569)
    assert (await refresh(http, sim, pair["refresh_token"])).status_code == 400
    # A refused early refresh does not use the token up.
    await admin.advance_clock(1)
    later = await refresh(http, sim, pair["refresh_token"])
    assert later.status_code == 200
    stats = await chain_stats(admin)
    assert stats["too_early"] == 2
    assert stats["refreshes"] == 2
    assert stats["broken"] is False


async def test_a_refresh_token_unused_for_30_days_expires(http, sim, admin):
    first = (await refresh(http, sim, _initial(sim))).json()
    await admin.advance_clock(30 * DAY - 1)
    second = await refresh(http, sim, first["refresh_token"])
    assert second.status_code == 200

    await admin.advance_clock(30 * DAY)
    expired = await refresh(http, sim, second.json()["refresh_token"])

    assert expired.status_code == 400
    body = expired.json()
    assert body["error"] == "invalid_request"
    assert body["error_description"].startswith("The refresh token expired at ")
    assert " and it is now " in body["error_description"]
    assert (await chain_stats(admin))["expired"] is True


async def test_an_authorization_header_is_refused_without_using_the_token(http, sim):
    response = await refresh(http, sim, _initial(sim), auth=("client", "secret"))

    assert response.status_code == 401
    assert (await refresh(http, sim, _initial(sim))).status_code == 200


async def test_a_wrong_client_secret_is_an_invalid_client(http, sim):
    data = {
        "grant_type": "refresh_token",
        "refresh_token": _initial(sim),
        "client_id": sim.state.settings.exact_client_id,
        "client_secret": "not-the-secret",
    }

    response = await http.post("/api/oauth2/token", data=data)

    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


async def test_the_authorization_code_grant_starts_a_new_chain(http, sim, admin):
    redirect_uri = "https://connector.example/oauth/callback"
    consent = await http.get(
        "/api/oauth2/auth",
        params={
            "client_id": sim.state.settings.exact_client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "state": "xyz",
        },
    )
    assert consent.status_code == 302
    location = urlsplit(consent.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    exchange = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": redirect_uri,
        **_client(sim),
    }

    issued = await http.post("/api/oauth2/token", data=exchange)

    assert issued.status_code == 200
    assert issued.json()["expires_in"] == "600"
    assert (await me(http, issued.json()["access_token"])).status_code == 200
    # Codes are single use.
    again = await http.post("/api/oauth2/token", data=exchange)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    chains = (await admin.stats())["token_chains"]
    assert [c["origin"] for c in chains] == ["configured", "authorization_code"]


async def test_an_authorization_code_lives_three_minutes(http, sim, admin):
    redirect_uri = "https://connector.example/oauth/callback"
    consent = await http.get(
        "/api/oauth2/auth",
        params={
            "client_id": sim.state.settings.exact_client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
        },
    )
    code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
    await admin.advance_clock(180)

    response = await http.post(
        "/api/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            **_client(sim),
        },
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
