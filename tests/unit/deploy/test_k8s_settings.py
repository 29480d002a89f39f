"""Each service, given exactly the environment its pod gets (the ConfigMap, its Secret, its own
variables), starts: the simulated overlay as it is, production once the operator has filled
`config.env` and created the Secrets its README lists, and never before."""

from __future__ import annotations

import importlib
import os
import re

import pytest
from k8s_render import K8S, SERVICES, generated, named, of_kind, pod_spec, secret_data, unhashed

from common.crypto import generate_key

#: What an operator puts in production's Secrets, by key: well-formed, not the simulators'.
OPERATOR_SECRETS = {
    "MLC_AMQP_URL": "amqp://mlc-{service}:b6f1c2d3e4a5968778695a4b3c2d1e0f@rabbitmq:5672/",
    "MLC_DATABASE_URL": "postgresql://mlc_{role}:0a1b2c3d4e5f60718293a4b5c6d7e8f9@postgres:5432/mlc",
    "MLC_AUDITOR_DATA_KEY": generate_key(),
    "MLC_SECRET_KEY": generate_key(),
}
#: What an operator writes over each `replace-me` of config.env.
OPERATOR_SETTINGS = {
    "MLC_EXACT_CLIENT_ID": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "MLC_TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
    "MLC_TWILIO_MESSAGING_SERVICE_SID": "MG" + "fedcba9876543210" * 2,
    "MLC_TWILIO_VOICE_FROM": "+31201234567",
    "MLC_SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEacme",
    "MLC_EMAIL_FROM": "billing@acme.example",
}


def settings_class(service: str) -> type:
    return importlib.import_module(f"{service.replace('-', '_')}.settings").Settings


def pod_environment(objects: tuple[dict, ...], service: str, secrets: dict[str, str]) -> dict:
    """The variables the service's container gets: envFrom in order, then its own env."""
    (container,) = pod_spec(named(objects, "Deployment", service))["containers"]
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            (config,) = [
                c
                for c in of_kind(objects, "ConfigMap")
                if c["metadata"]["name"] == source["configMapRef"]["name"]
            ]
            env.update(config["data"])
        if "secretRef" in source:
            env.update(secrets[unhashed(source["secretRef"]["name"])])
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def start(monkeypatch: pytest.MonkeyPatch, service: str, env: dict[str, str]) -> str | None:
    """What the service says at start in that environment: None, or why it refuses."""
    for name in [n for n in os.environ if n.startswith("MLC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_class(service)()
    problem = settings.credentials_problem(settings.needed_credentials())
    if problem is None and service == "dispatcher":
        for vendor in (settings.twilio_api_base_url, settings.sendgrid_api_base_url):
            problem = problem or settings.public_url_problem(vendor)
    return problem


def documented_keys() -> dict[str, set[str]]:
    readme = (K8S / "overlays" / "production" / "README.md").read_text()
    table = {}
    for line in readme.splitlines():
        match = re.match(r"\s*\| `ml-connector-([a-z-]+)` \| (.+?) \|", line)
        if match and match[1] in SERVICES:
            table[match[1]] = set(re.findall(r"`(MLC_[A-Z0-9_]+)`", match[2]))
    return table


def operator_secrets(*, refresh_token: bool = False) -> dict[str, dict[str, str]]:
    """Production's Secrets as the README asks for them, each key with a well-formed value;
    token-keeper's optional refresh token only when asked (otherwise `mlc connect`)."""
    made = {}
    for service, keys in documented_keys().items():
        values = {}
        for key in keys:
            if key == "MLC_EXACT_REFRESH_TOKEN" and not refresh_token:
                continue
            value = OPERATOR_SECRETS.get(key, f"operator-{key.lower().replace('_', '-')}")
            values[key] = value.format(service=service, role=service.replace("-", "_"))
        made[f"ml-connector-{service}"] = values
    return made


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_starts_on_what_the_simulated_overlay_gives_it(
    simulated, monkeypatch, service
):
    secrets = {
        unhashed(s["metadata"]["name"]): secret_data(s) for s in of_kind(simulated, "Secret")
    }
    env = pod_environment(simulated, service, secrets)
    assert env["MLC_PROFILE"] == "simulator"
    assert start(monkeypatch, service, env) is None


@pytest.mark.parametrize("service", SERVICES)
def test_each_production_service_refuses_to_start_until_config_env_is_filled(
    production, monkeypatch, service
):
    env = pod_environment(production, service, operator_secrets())
    refused = start(monkeypatch, service, env)
    assert refused is not None
    assert "replace-me" in refused
    placeholders = {k for k, v in env.items() if v == "replace-me"}
    assert placeholders <= set(OPERATOR_SETTINGS)
    filled = {**env, **{k: OPERATOR_SETTINGS[k] for k in placeholders}}
    assert start(monkeypatch, service, filled) is None


def test_a_production_refresh_token_needs_the_division_beside_it(production, monkeypatch):
    env = pod_environment(production, "token-keeper", operator_secrets(refresh_token=True))
    env.update({k: OPERATOR_SETTINGS[k] for k, v in env.items() if v == "replace-me"})
    assert env["MLC_EXACT_REFRESH_TOKEN"]
    refused = start(monkeypatch, "token-keeper", env)
    assert refused is not None
    assert refused.startswith("MLC_EXACT_DIVISION")
    assert start(monkeypatch, "token-keeper", {**env, "MLC_EXACT_DIVISION": "2650123"}) is None


def test_production_config_is_the_overlay_config_map(production):
    config = generated(production, "ConfigMap", "ml-connector-config")["data"]
    lines = (K8S / "overlays" / "production" / "config.env").read_text().splitlines()
    written = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert written.items() <= config.items()
