"""A real vendor must be able to reach MLC_PUBLIC_BASE_URL: HTTPS, not loopback or private.
The simulators (any other host) call back wherever they are told."""

from __future__ import annotations

import pytest

from common.settings import ServiceSettings


@pytest.mark.parametrize(
    ("public", "vendor", "problem"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8091", None),  # simulators
        ("http://ingress:8080", "http://sim-twilio:8091", None),  # compose, simulated
        ("https://hooks.acme.example", "https://api.twilio.com", None),
        ("http://hooks.acme.example", "https://api.twilio.com", "https://"),
        ("https://127.0.0.1:8443", "https://api.sendgrid.com", "reachable"),
        ("https://10.1.2.3", "https://start.exactonline.nl", "reachable"),
        ("https://ingress", "https://start.exactonline.be", "reachable"),
        ("https://[::1]", "https://api.twilio.com", "reachable"),
    ],
)
def test_a_real_vendor_needs_a_public_https_callback_url(
    public: str, vendor: str, problem: str | None
) -> None:
    found = ServiceSettings(public_base_url=public).public_url_problem(vendor)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
