"""The deployment files agree with the code: every Deployment runs a console script that exists,
probes /readyz and /healthz, requests resources and has a PodDisruptionBudget; compose runs the
same set; alert rules and the dashboard only query series the code defines."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
SERVICES = {"ingress", "enricher", "dispatcher", "auditor", "token-keeper"}


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def console_scripts() -> set[str]:
    scripts: set[str] = set()
    for pyproject in ROOT.glob("*/*/pyproject.toml"):
        scripts |= set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    return scripts


def defined_metrics() -> set[str]:
    names: set[str] = set()
    for source in [*ROOT.glob("libs/**/*.py"), *ROOT.glob("services/**/*.py")]:
        names |= set(re.findall(r'"(mlc_[a-z_]+)"', source.read_text()))
    return names


def kustomize(directory: Path) -> list[dict]:
    """Resources of a kustomization, following bases (patches are checked to exist only)."""
    config = yaml.safe_load((directory / "kustomization.yaml").read_text())
    found: list[dict] = []
    for resource in config.get("resources", []):
        target = (directory / resource).resolve()
        found += kustomize(target) if target.is_dir() else documents(target)
    for patch in config.get("patches", []):
        assert (directory / patch["path"]).is_file(), patch
    return found


@pytest.mark.parametrize("overlay", ["simulated", "production"])
def test_every_deployment_is_probed_sized_and_protected(overlay):
    resources = kustomize(K8S / "overlays" / overlay)
    deployments = {d["metadata"]["name"]: d for d in resources if d["kind"] == "Deployment"}
    budgets = {d["metadata"]["name"] for d in resources if d["kind"] == "PodDisruptionBudget"}
    assert set(deployments) >= SERVICES
    assert budgets >= SERVICES
    scripts = console_scripts()
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"][0] in scripts, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["resources"]["requests"], name
        port = container["ports"][0]["containerPort"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MLC_HTTP_PORT"] == str(port), name


def test_the_simulated_overlay_points_every_service_at_the_simulators():
    resources = kustomize(K8S / "overlays" / "simulated")
    names = {d["metadata"]["name"] for d in resources if d["kind"] == "Deployment"}
    assert {"sim-exact", "sim-twilio"} <= names
    patch = yaml.safe_load((K8S / "overlays" / "simulated" / "config.yaml").read_text())
    assert patch["data"]["MLC_EXACT_BASE_URL"] == "http://sim-exact:8090"


def test_compose_runs_each_component_with_a_console_script_and_its_port():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    scripts = console_scripts()
    ours = {n: s for n, s in compose.items() if s.get("command", [""])[0].startswith("mlc-")}
    assert set(ours) == SERVICES | {"sim-exact", "sim-twilio"}
    for name, service in ours.items():
        assert service["command"][0] in scripts, name
        assert service["environment"]["MLC_HTTP_PORT"], name


def test_alerts_and_the_dashboard_query_only_series_the_code_defines():
    defined = defined_metrics()
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/ml-connector.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|sum|count)$", "", m)
        for e in exprs
        for m in re.findall(r"\b(mlc_[a-z_]+)", e)
    }
    assert used
    assert used <= defined, used - defined


def test_the_definitions_file_matches_the_topology():
    from common import topology

    exported = json.loads((ROOT / "deploy/rabbitmq/definitions.json").read_text())
    assert exported == topology.definitions()
