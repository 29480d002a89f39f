"""The dispatcher refuses to send through a real vendor whose callbacks could not reach it."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher import app
from dispatcher.settings import Settings


async def test_the_dispatcher_will_not_start_against_twilio_with_a_loopback_callback_url():
    settings = Settings(
        twilio_api_base_url="https://api.twilio.com", public_base_url="http://127.0.0.1:8080"
    )
    with pytest.raises(SystemExit) as refused:
        await app.run(settings, asyncio.Event())
    assert "MLC_PUBLIC_BASE_URL must be https://" in str(refused.value)
