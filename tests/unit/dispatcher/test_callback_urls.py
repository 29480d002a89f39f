"""Callback URLs name their connection percent-encoded, so an id with reserved characters
reaches ingress as itself and leaves the rest of the URL (which Twilio signs) intact."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from dispatcher.adapters.accounts import with_connection
from ingress.views import signed_url
from token_keeper.cli.subscriptions import callback_url

ODD_IDS = ["acme", "acme & zonen", "a+b=c#d", "bakkerij/noord?x=1", "café"]


@pytest.mark.parametrize("connection_id", ODD_IDS)
def test_the_status_callback_query_gives_back_exactly_the_connection_id(connection_id):
    url = with_connection("https://hooks.example/webhooks/twilio/status", connection_id)

    parts = urlsplit(url)
    assert parts.path == "/webhooks/twilio/status"
    assert parts.fragment == ""
    assert parse_qs(parts.query) == {"connection": [connection_id]}
    assert URL(url).query["connection"] == connection_id  # as aiohttp (ingress) reads it


def test_without_a_connection_the_callback_has_no_query():
    assert with_connection("https://hooks.example/x", None) == "https://hooks.example/x"


@pytest.mark.parametrize("connection_id", ODD_IDS)
def test_the_exact_webhook_url_holds_the_connection_id_as_one_path_segment(connection_id):
    url = callback_url("https://hooks.example/", connection_id)

    parsed = URL(url)
    assert parsed.query_string == ""
    assert parsed.parts[:3] == ("/", "webhooks", "exact")
    assert parsed.parts[3:] == (connection_id,)  # as aiohttp's {connection_id} match reads it


@pytest.mark.parametrize("connection_id", ODD_IDS)
def test_ingress_checks_the_signature_on_the_url_the_callback_was_given(connection_id):
    base = "https://hooks.example"
    url = with_connection(f"{base}/webhooks/twilio/status", connection_id)
    request = make_mocked_request("POST", url.removeprefix(base))

    assert signed_url(base + "/", request) == url
    assert request.query["connection"] == connection_id
