"""Exact's OAuth2 endpoints over HTTP (rules in ``oauth``).

    GET  /api/oauth2/auth?client_id&redirect_uri&response_type=code&state
         -> 302 to redirect_uri?code=..&state=..   (consent is given automatically)
    POST /api/oauth2/token   form: grant_type=refresh_token (refresh_token, client_id,
         client_secret) or grant_type=authorization_code (code, redirect_uri, client_id,
         client_secret) -> {"access_token", "token_type": "bearer", "expires_in": "600",
         "refresh_token"}

Credentials travel in the form only: a request with an ``Authorization`` header gets 401.
"""

from __future__ import annotations

from urllib.parse import urlencode

import structlog
from aiohttp import web

from sim_exact.oauth import TokenError
from sim_exact.state import SIMULATOR

__all__ = ["add_routes"]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_log = structlog.get_logger("sim_exact.oauth")


def _refused(error: TokenError) -> web.Response:
    return web.json_response(
        error.body(), status=error.status, headers={**_NO_STORE, **error.headers}
    )


async def token(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    form = await request.post()
    grant_type = str(form.get("grant_type", ""))
    label = grant_type if grant_type in ("refresh_token", "authorization_code") else "other"
    try:
        if "Authorization" in request.headers:
            raise TokenError(
                401,
                "invalid_request",
                "Send the client credentials in the request body, not in an Authorization header.",
                outcome="authorization_header",
            )
        if label == "other":
            raise TokenError(400, "unsupported_grant_type")
        sim.oauth.check_client(_text(form.get("client_id")), _text(form.get("client_secret")))
        if grant_type == "refresh_token":
            refresh_token = _text(form.get("refresh_token"))
            if not refresh_token:
                raise TokenError(400, "invalid_request", "refresh_token is required.")
            pair = sim.oauth.refresh(refresh_token)
        else:
            code = _text(form.get("code"))
            if not code:
                raise TokenError(400, "invalid_request", "code is required.")
            pair = sim.oauth.exchange(code, _text(form.get("redirect_uri")))
    except TokenError as error:
        sim.metrics.token_requests.labels(label, error.outcome).inc()
        _log.info("token_refused", grant_type=label, outcome=error.outcome)
        return _refused(error)
    sim.metrics.token_requests.labels(label, "issued").inc()
    _log.info("token_issued", grant_type=label)
    return web.json_response(pair.body(), headers=_NO_STORE)


async def authorize(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    query = request.query
    redirect_uri = query.get("redirect_uri")
    if query.get("response_type") != "code" or not redirect_uri:
        return web.json_response(
            {
                "error": "invalid_request",
                "error_description": "response_type=code and redirect_uri are required.",
            },
            status=400,
        )
    try:
        code = sim.oauth.authorize(query.get("client_id", ""), redirect_uri)
    except TokenError as error:
        return _refused(error)
    params = {"code": code, **({"state": query["state"]} if "state" in query else {})}
    separator = "&" if "?" in redirect_uri else "?"
    return web.Response(
        status=302, headers={"Location": redirect_uri + separator + urlencode(params)}
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/oauth2/token", token)
    app.router.add_get("/api/oauth2/auth", authorize)
