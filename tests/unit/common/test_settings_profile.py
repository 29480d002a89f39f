"""No credential has a default outside the simulator profile, and no service starts with a
simulator value or ``replace-me`` pointed at a real vendor, nor without a credential it needs.

The suite runs under ``MLC_PROFILE=simulator`` (the pytest plugin); these tests name the
profile they mean.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from common.settings import PLACEHOLDER, SIMULATOR_DEFAULTS, ServiceSettings
from dispatcher.settings import Settings as DispatcherSettings
from ingress.settings import Settings as IngressSettings
from sim_twilio.settings import Settings as SimTwilioSettings
from token_keeper.settings import Settings as TokenKeeperSettings

TWILIO = "https://api.twilio.com"


def _value(settings: ServiceSettings, name: str) -> object:
    value = getattr(settings, name)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_the_production_profile_gives_no_credential_a_simulator_value() -> None:
    settings = ServiceSettings(profile="production")
    for name, simulated in SIMULATOR_DEFAULTS.items():
        assert _value(settings, name) != simulated, name


def test_the_simulator_profile_fills_only_the_credentials_left_unset() -> None:
    settings = ServiceSettings(profile="simulator", twilio_auth_token=SecretStr("own-token"))
    assert settings.twilio_auth_token.get_secret_value() == "own-token"
    assert (
        settings.exact_webhook_secret.get_secret_value()
        == (SIMULATOR_DEFAULTS["exact_webhook_secret"])
    )
    assert settings.exact_division == SIMULATOR_DEFAULTS["exact_division"]


def test_the_profile_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLC_PROFILE", "production")
    assert ServiceSettings().sendgrid_api_key.get_secret_value() == ""
    monkeypatch.setenv("MLC_PROFILE", "simulator")
    assert (
        ServiceSettings().sendgrid_api_key.get_secret_value()
        == (SIMULATOR_DEFAULTS["sendgrid_api_key"])
    )


def test_a_simulator_is_the_simulator_profile_whatever_the_services_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLC_PROFILE")
    assert (
        SimTwilioSettings().twilio_auth_token.get_secret_value()
        == (SIMULATOR_DEFAULTS["twilio_auth_token"])
    )


def test_a_needed_credential_left_unset_is_named() -> None:
    problem = IngressSettings(profile="production").credentials_problem(
        IngressSettings(profile="production").needed_credentials()
    )
    assert problem is not None
    assert problem.startswith("MLC_TWILIO_ACCOUNT_SID is not set")


@pytest.mark.parametrize(
    ("setting", "vendor_url", "variable"),
    [
        ("twilio_auth_token", {"twilio_api_base_url": TWILIO}, "MLC_TWILIO_AUTH_TOKEN"),
        (
            "exact_webhook_secret",
            {"exact_base_url": "https://start.exactonline.nl"},
            "MLC_EXACT_WEBHOOK_SECRET",
        ),
        (
            "sendgrid_api_key",
            {"sendgrid_api_base_url": "https://api.sendgrid.com"},
            "MLC_SENDGRID_API_KEY",
        ),
    ],
)
def test_a_simulator_secret_or_placeholder_is_refused_against_a_real_vendor(
    setting: str, vendor_url: dict[str, str], variable: str
) -> None:
    simulated = ServiceSettings(
        profile="production", **{setting: SIMULATOR_DEFAULTS[setting]}, **vendor_url
    ).credentials_problem(())
    assert simulated is not None
    assert simulated.startswith(f"{variable} is the simulators' value")
    placeholder = ServiceSettings(
        profile="production", **{setting: PLACEHOLDER}, **vendor_url
    ).credentials_problem(())
    assert placeholder is not None
    assert placeholder.startswith(f"{variable} is still 'replace-me'")


def test_the_simulator_profile_against_a_real_vendor_is_refused() -> None:
    problem = ServiceSettings(profile="simulator", twilio_api_base_url=TWILIO).credentials_problem(
        ()
    )
    assert problem is not None
    assert "MLC_TWILIO_" in problem
    assert "unset MLC_PROFILE=simulator" in problem


def test_simulator_credentials_against_the_simulators_are_fine() -> None:
    settings = DispatcherSettings(profile="simulator")
    assert settings.credentials_problem(settings.needed_credentials()) is None


def test_real_looking_credentials_against_a_real_vendor_are_fine() -> None:
    settings = IngressSettings(
        profile="production",
        twilio_api_base_url=TWILIO,
        twilio_account_sid="AC" + "0123456789abcdef" * 2,
        twilio_auth_token=SecretStr("a-real-looking-token"),
        sendgrid_webhook_public_key="MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE-a-real-one",
    )
    assert settings.credentials_problem(settings.needed_credentials()) is None


def test_the_dispatcher_needs_the_api_key_secret_instead_of_the_auth_token_with_a_key() -> None:
    with_key = DispatcherSettings(profile="production", twilio_api_key_sid="SK" + "0" * 32)
    assert "twilio_api_key_secret" in with_key.needed_credentials()
    assert "twilio_auth_token" not in with_key.needed_credentials()
    assert "twilio_auth_token" in DispatcherSettings(profile="production").needed_credentials()


def test_token_keeper_needs_the_exact_app_only_for_a_default_connection() -> None:
    assert TokenKeeperSettings(profile="production").needed_credentials() == ()
    seeded = TokenKeeperSettings(profile="production", exact_refresh_token=SecretStr("rt"))
    problem = seeded.credentials_problem(seeded.needed_credentials())
    assert problem is not None
    assert problem.startswith("MLC_EXACT_CLIENT_ID is not set")


def test_a_service_process_refuses_a_placeholder_auth_token_in_one_line() -> None:
    env = {
        **os.environ,
        "MLC_PROFILE": "production",
        "MLC_TWILIO_API_BASE_URL": TWILIO,
        "MLC_TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
        "MLC_TWILIO_AUTH_TOKEN": PLACEHOLDER,
        "MLC_SENDGRID_WEBHOOK_PUBLIC_KEY": "a-real-looking-key",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlc-ingress")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mlc-ingress: cannot start: MLC_TWILIO_AUTH_TOKEN is still 'replace-me'; "
        "set it for api.twilio.com"
    ]
