"""The deployment files agree with the code: compose runs every component with a console script;
alert rules load in Prometheus and, like the dashboard, query only series the code defines; the
broker's definitions are the topology's. (Kubernetes: test_k8s_*.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
SERVICES = {"ingress", "enricher", "dispatcher", "auditor", "token-keeper"}
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
#: A Prometheus duration (``5m``, ``1h30m``).
DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")


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


def test_alert_rules_are_well_formed_and_pass_promtool_where_installed():
    """The structure Prometheus loads, checked here whatever is installed; where `promtool` is
    on the PATH (Debian's `prometheus` package), Prometheus's own parser checks the
    expressions too."""
    rules = yaml.safe_load(ALERTS.read_text())
    assert set(rules) == {"groups"}
    seen: set[str] = set()
    for group in rules["groups"]:
        assert set(group) <= {"name", "interval", "rules"}, group.get("name")
        for rule in group["rules"]:
            name = rule["alert"]
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
            assert re.fullmatch(r"Mlc[A-Z][A-Za-z]+", name), name
            assert name not in seen, name
            seen.add(name)
            assert rule["labels"]["severity"] in {"page", "warn"}, name
            assert rule["annotations"]["summary"], name
            assert DURATION.fullmatch(rule.get("for", "0s")), name
            expr = rule["expr"]
            bare = re.sub(r'"(\\.|[^"\\])*"', '""', expr)  # label values may hold brackets
            for ranged in re.findall(r"\[([^\]]+)\]", bare):
                assert DURATION.fullmatch(ranged), (name, ranged)
            for opening, closing in ("()", "{}", "[]"):
                assert bare.count(opening) == bare.count(closing), (name, opening)
            # an aggregation keeps only its `by` labels: the summary may name only those
            kept = re.findall(r"\bby \(([^)]*)\)", expr)
            named = set(re.findall(r"\$labels\.(\w+)", rule["annotations"]["summary"]))
            if kept:
                assert named <= {label.strip() for label in kept[-1].split(",")}, name
    assert len(seen) >= 10
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run(
            [promtool, "check", "rules", str(ALERTS)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"SUCCESS: {len(seen)} rules found" in checked.stdout
