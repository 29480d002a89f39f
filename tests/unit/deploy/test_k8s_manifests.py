"""The Kubernetes overlays, rendered as ``kubectl apply -k`` renders them: valid objects for the
Kubernetes API, no Secret in production, a complete simulated install, restricted pods, probes,
disruption budgets, migration Jobs and a TLS Ingress that exposes only the webhooks."""

from __future__ import annotations

import base64
import copy
import re
import tomllib
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from k8s_render import (
    K8S,
    ROOT,
    SERVICES,
    WORKLOADS,
    generated,
    named,
    of_kind,
    pod_labels,
    pod_spec,
    secret_data,
    unhashed,
)

from common.runtime import STARTUP_TIMEOUT

#: The oldest and the newest Kubernetes the manifests are checked against (strict: an unknown
#: or misspelt field fails, as `kubectl apply --validate=strict` would).
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
#: Where a process writes its temporary files, on a read-only root filesystem.
TMP = "/tmp"  # noqa: S108 (a path in the container, not a file this test writes)
#: Where the postgres image looks for its first-start scripts.
INITDB = "/docker-entrypoint-initdb.d"
#: Schema owners: service -> (schema, package), from the code (``db.migrate`` calls).
SCHEMA_OWNERS = ("enricher", "dispatcher", "auditor", "token-keeper")


def console_scripts() -> set[str]:
    scripts: set[str] = set()
    for pyproject in ROOT.glob("*/*/pyproject.toml"):
        scripts |= set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    return scripts


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def references(objects: tuple[dict, ...]) -> dict[str, set[str]]:
    """Every ConfigMap and Secret name a pod or an Ingress refers to, by kind."""
    found: dict[str, set[str]] = {"ConfigMap": set(), "Secret": set()}
    for workload in of_kind(objects, *WORKLOADS):
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    found["ConfigMap"].add(source["configMapRef"]["name"])
                if "secretRef" in source:
                    found["Secret"].add(source["secretRef"]["name"])
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    found["Secret"].add(ref["secretKeyRef"]["name"])
                if "configMapKeyRef" in ref:
                    found["ConfigMap"].add(ref["configMapKeyRef"]["name"])
        for volume in pod_spec(workload).get("volumes", []):
            if "configMap" in volume:
                found["ConfigMap"].add(volume["configMap"]["name"])
            if "secret" in volume:
                found["Secret"].add(volume["secret"]["secretName"])
    for ingress in of_kind(objects, "Ingress"):
        found["Secret"] |= {t["secretName"] for t in ingress["spec"].get("tls", [])}
    return found


# --- valid for the API ------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_against_the_kubernetes_schema(overlay, version):
    assert overlay
    for obj in overlay:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_check_rejects_a_misspelt_field(production):
    deployment = copy.deepcopy(of_kind(production, "Deployment")[0])
    pod_spec(deployment)["containers"][0]["securityContex"] = {"runAsNonRoot": True}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def secret_settings() -> set[str]:
    """The variables of every setting the code holds as a ``SecretStr``, and the two URLs that
    carry a password."""
    import importlib

    names = {"MLC_AMQP_URL", "MLC_DATABASE_URL"}
    for module in ("ingress", "enricher", "dispatcher", "auditor", "token_keeper"):
        settings = importlib.import_module(f"{module}.settings").Settings
        for field, info in settings.model_fields.items():
            if "SecretStr" in str(info.annotation):
                names.add(f"MLC_{field.upper()}")
    return names


# --- production: Secrets referenced, never shipped ---------------------------------------------


def documented_secrets() -> dict[str, set[str]]:
    """The table of overlays/production/README.md: Secret -> the keys it holds."""
    table: dict[str, set[str]] = {}
    readme = (K8S / "overlays" / "production" / "README.md").read_text()
    for line in readme.splitlines():
        match = re.match(r"\s*\| `(ml-connector-[a-z-]+)` \| (.+?) \|", line)
        keys = set(re.findall(r"`(MLC_[A-Z0-9_]+)`", match[2])) if match else set()
        if match and keys:
            table[match[1]] = keys
    return table


def test_production_ships_no_secret(production):
    assert of_kind(production, "Secret") == []
    assert "Secret" not in {o["kind"] for o in production}


def test_production_references_one_secret_per_service_each_documented(production):
    referenced = references(production)["Secret"]
    documented = documented_secrets()
    per_service = {f"ml-connector-{s}" for s in SERVICES}
    assert referenced == per_service | {"ml-connector-webhooks-tls"}
    assert set(documented) == per_service
    for service in SERVICES:
        (deployment,) = [
            d for d in of_kind(production, "Deployment") if d["metadata"]["name"] == service
        ]
        (container,) = pod_spec(deployment)["containers"]
        secrets = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
        assert secrets == {f"ml-connector-{service}"}, service


def test_the_simulated_secrets_hold_only_keys_production_documents(simulated):
    documented = documented_secrets()
    for service in SERVICES:
        keys = set(secret_data(generated(simulated, "Secret", f"ml-connector-{service}")))
        assert keys, service
        assert keys <= documented[f"ml-connector-{service}"], (service, keys)
    # and every key production documents is a secret the code knows
    assert set().union(*documented.values()) <= secret_settings()


def test_only_token_keepers_secret_holds_the_secret_key(simulated, production):
    holders = [
        unhashed(secret["metadata"]["name"])
        for secret in of_kind(simulated, "Secret")
        if "MLC_SECRET_KEY" in secret_data(secret)
    ]
    assert holders == ["ml-connector-token-keeper"]
    assert "MLC_SECRET_KEY" in documented_secrets()["ml-connector-token-keeper"]
    assert not [
        name
        for name, keys in documented_secrets().items()
        if "MLC_SECRET_KEY" in keys and name != "ml-connector-token-keeper"
    ]
    for config_map in of_kind(simulated, "ConfigMap") + of_kind(production, "ConfigMap"):
        assert not {"MLC_SECRET_KEY", "MLC_AMQP_URL"} & set(config_map.get("data", {}))


def test_production_settings_leave_every_install_specific_value_to_set(production):
    config = generated(production, "ConfigMap", "ml-connector-config")["data"]
    env = (K8S / "overlays" / "production" / "config.env").read_text()
    for variable in ("MLC_EXACT_CLIENT_ID", "MLC_TWILIO_ACCOUNT_SID", "MLC_EMAIL_FROM"):
        assert config[variable] == "replace-me", variable
        assert f"{variable}=replace-me" in env
    assert "MLC_PROFILE" not in config
    for variable in ("MLC_EXACT_BASE_URL", "MLC_TWILIO_API_BASE_URL", "MLC_PUBLIC_BASE_URL"):
        assert urlsplit(config[variable]).scheme == "https", variable
    assert not set(config) & secret_settings()


# --- simulated: a complete install ---------------------------------------------------------------


def test_the_simulated_overlay_defines_everything_its_pods_refer_to(simulated):
    referenced = references(simulated)
    for kind, names in referenced.items():
        present = {o["metadata"]["name"] for o in of_kind(simulated, kind)}
        assert names <= present, (kind, names - present)
    services = {s["metadata"]["name"] for s in of_kind(simulated, "Service")}
    assert {"rabbitmq", "postgres", "sim-exact", "sim-twilio", *SERVICES} <= services
    assert {s["metadata"]["name"] for s in of_kind(simulated, "StatefulSet")} == {
        "rabbitmq",
        "postgres",
    }
    assert of_kind(simulated, "Ingress") == []


def test_the_simulated_overlay_runs_every_service_on_the_simulator_profile(simulated):
    from common.settings import ServiceSettings

    config = generated(simulated, "ConfigMap", "ml-connector-config")["data"]
    assert config["MLC_PROFILE"] == "simulator"
    assert "simulator" in str(ServiceSettings.model_fields["profile"].annotation)
    ports = {
        s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]}
        for s in of_kind(simulated, "Service")
    }
    for variable, service in [
        ("MLC_EXACT_BASE_URL", "sim-exact"),
        ("MLC_TWILIO_API_BASE_URL", "sim-twilio"),
        ("MLC_SENDGRID_API_BASE_URL", "sim-twilio"),
        ("MLC_PUBLIC_BASE_URL", "ingress"),
    ]:
        url = urlsplit(config[variable])
        assert url.hostname == service, variable
        assert url.port in ports[service], variable
    deployments = {d["metadata"]["name"]: d for d in of_kind(simulated, "Deployment")}
    for simulator, script in [("sim-exact", "mlc-sim-exact"), ("sim-twilio", "mlc-sim-twilio")]:
        (container,) = pod_spec(deployments[simulator])["containers"]
        assert container["command"] == [script]
        assert (
            container["image"]
            == deployments["ingress"]["spec"]["template"]["spec"]["containers"][0]["image"]
        )
        callbacks = [e["value"] for e in container["env"] if e["value"].startswith("http://")]
        assert callbacks, simulator
        assert all(urlsplit(u).netloc == "ingress:8080" for u in callbacks if "webhooks" in u)


def test_the_simulated_secrets_say_they_open_only_the_simulators(simulated):
    secrets = of_kind(simulated, "Secret")
    assert len(secrets) == len(SERVICES) + 2
    for secret in secrets:
        for key, value in secret_data(secret).items():
            readable = value
            if re.fullmatch(r"[A-Za-z0-9_-]{43}=", value):  # a Fernet key: its 32 bytes
                readable = base64.urlsafe_b64decode(value).decode()
            assert "simulat" in readable, (secret["metadata"]["name"], key)


def test_each_service_connects_to_the_broker_and_database_as_its_own_user(simulated):
    broker = secret_data(generated(simulated, "Secret", "rabbitmq-users"))
    database = secret_data(generated(simulated, "Secret", "postgres-roles"))
    start = (ROOT / "deploy/rabbitmq/start.sh").read_text()
    assert set(re.findall(r"\$(MLC_AMQP_[A-Z_]+)", start)) == set(broker)
    roles = (K8S / "overlays/simulated/postgres/init-roles.sh").read_text()
    passwords = set()
    for service in SERVICES:
        own = secret_data(generated(simulated, "Secret", f"ml-connector-{service}"))
        suffix = service.upper().replace("-", "_")
        amqp = urlsplit(own["MLC_AMQP_URL"])
        assert (amqp.hostname, amqp.port) == ("rabbitmq", 5672)
        assert amqp.username == f"mlc-{service}"
        assert amqp.password == broker[f"MLC_AMQP_PASSWORD_{suffix}"]
        passwords.add(amqp.password)
        if service not in SCHEMA_OWNERS:
            assert "MLC_DATABASE_URL" not in own
            continue
        db = urlsplit(own["MLC_DATABASE_URL"])
        role = f"mlc_{service.replace('-', '_')}"
        assert (db.hostname, db.port, db.path) == ("postgres", 5432, "/mlc")
        assert db.username == role
        assert db.password == database[f"MLC_DB_PASSWORD_{suffix}"]
        assert f"CREATE ROLE {role} LOGIN PASSWORD" in roles
        assert f"$MLC_DB_PASSWORD_{suffix}" in roles
    assert len(passwords) == len(SERVICES)


def test_the_simulated_database_creates_the_roles_once_with_its_own_script(simulated):
    database = named(simulated, "StatefulSet", "postgres")
    (container,) = pod_spec(database)["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    (init,) = [v for v in pod_spec(database)["volumes"] if v["name"] == mounts[INITDB]]
    assert unhashed(init["configMap"]["name"]) == "postgres-init"
    assert init["configMap"]["defaultMode"] & 0o555 == 0o555  # executed, not sourced
    script = generated(simulated, "ConfigMap", "postgres-init")["data"]["init-roles.sh"]
    assert script.startswith("#!/bin/sh")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["POSTGRES_DB"] == "mlc"
    assert env["PGDATA"].startswith(mounts_of(container, "data") + "/")


def mounts_of(container: dict, volume: str) -> str:
    (path,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume]
    return path


def test_the_simulated_broker_loads_the_definitions_and_runs_start_sh(simulated):
    broker = named(simulated, "StatefulSet", "rabbitmq")
    (container,) = pod_spec(broker)["containers"]
    assert container["command"] == ["sh", "/etc/rabbitmq/mlc/start.sh"]
    files = generated(simulated, "ConfigMap", "rabbitmq-mlc")["data"]
    assert files["definitions.json"] == (ROOT / "deploy/rabbitmq/definitions.json").read_text()
    assert files["start.sh"] == (ROOT / "deploy/rabbitmq/start.sh").read_text()
    conf = dict(
        line.split(" = ", 1) for line in files["rabbitmq.conf"].splitlines() if " = " in line
    )
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert PurePosixPath(conf["load_definitions"]).parent.as_posix() in mounts
    assert mounts["/etc/rabbitmq/conf.d/20-mlc.conf"]["subPath"] == "rabbitmq.conf"
    assert "mlc-users-ready" in " ".join(container["readinessProbe"]["exec"]["command"])


# --- every workload ---------------------------------------------------------------------------


def test_every_workload_runs_with_the_restricted_pod_security_profile(overlay):
    workloads = of_kind(overlay, *WORKLOADS)
    assert workloads
    for workload in workloads:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork"), name
        assert not spec.get("hostPID"), name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
        writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert not context.get("privileged"), name
            assert context.get("runAsUser", pod["runAsUser"]) > 0, name
            resources = container["resources"]
            assert set(resources["requests"]) >= {"cpu", "memory"}, name
            assert set(resources["limits"]) >= {"cpu", "memory"}, name
            # Python, the broker and the database may write temporary files: a scratch volume
            (tmp,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == TMP]
            assert tmp in writable, name


def test_every_service_is_probed_on_its_health_endpoints(overlay):
    deployments = {d["metadata"]["name"]: d for d in of_kind(overlay, "Deployment")}
    assert set(deployments) >= set(SERVICES)
    scripts = console_scripts()
    for name, deployment in deployments.items():
        (container,) = pod_spec(deployment)["containers"]
        assert container["command"][0] in scripts, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        port = container["ports"][0]["containerPort"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MLC_HTTP_PORT"] == str(port), name
        assert env["MLC_HTTP_HOST"] == "0.0.0.0", name
        if name in SERVICES:
            startup = container["startupProbe"]
            assert startup["httpGet"]["path"] == "/healthz", name
            # a service serves HTTP only once the database and the broker answered, each
            # waited for up to STARTUP_TIMEOUT: the probe must not kill it sooner
            assert startup["periodSeconds"] * startup["failureThreshold"] > 2 * STARTUP_TIMEOUT
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(port), name
            assert annotations["prometheus.io/path"] == "/metrics", name


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def test_each_service_and_budget_selects_the_pods_of_exactly_one_workload(overlay):
    workloads = of_kind(overlay, *WORKLOADS)
    budgets = {b["metadata"]["name"]: b for b in of_kind(overlay, "PodDisruptionBudget")}
    assert set(budgets) == set(SERVICES)
    for budget in budgets.values():
        chosen = [w for w in workloads if selects(budget["spec"]["selector"], pod_labels(w))]
        assert [w["metadata"]["name"] for w in chosen] == [budget["metadata"]["name"]]
        assert chosen[0]["kind"] == "Deployment"
        assert budget["spec"].get("maxUnavailable") == 1 or (
            budget["spec"]["minAvailable"] < chosen[0]["spec"]["replicas"]
        )
    for service in of_kind(overlay, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        chosen = [w["metadata"]["name"] for w in workloads if selects(selector, pod_labels(w))]
        assert chosen == [service["metadata"]["name"]], (service["metadata"]["name"], chosen)


def test_a_migration_job_runs_each_schema_owner_as_that_service_before_it_rolls_out(overlay):
    import importlib.util

    spec = importlib.util.spec_from_file_location("migrate", K8S / "base" / "migrate.py")
    assert spec is not None
    assert spec.loader is not None
    migrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migrate)
    # what the services migrate at start: (schema, package) of every db.migrate call
    in_code = set()
    for source in ROOT.glob("services/*/*/**/*.py"):
        in_code |= set(re.findall(r'db\.migrate\(\s*\w+,\s*"(\w+)",\s*"(\w+)"', source.read_text()))
    with_migrations = {p.parent.parent.name for p in ROOT.glob("services/*/*/migrations")}
    assert set(migrate.SCHEMAS) == set(SCHEMA_OWNERS) == with_migrations
    assert {(schema, package) for schema, package, _ in migrate.SCHEMAS.values()} == in_code
    jobs = {j["metadata"]["name"]: j for j in of_kind(overlay, "Job")}
    assert set(jobs) == {f"{s}-migrate" for s in SCHEMA_OWNERS}
    for service in SCHEMA_OWNERS:
        job = jobs[f"{service}-migrate"]
        (container,) = pod_spec(job)["containers"]
        assert container["command"] == ["python", "/opt/mlc/migrate.py", service]
        secrets = [
            unhashed(s["secretRef"]["name"]) for s in container["envFrom"] if "secretRef" in s
        ]
        assert secrets == [f"ml-connector-{service}"], service
        assert pod_labels(job)["app.kubernetes.io/component"] == "migration"
        assert job["spec"]["backoffLimit"] >= 1
        script = [v for v in pod_spec(job)["volumes"] if "configMap" in v]
        assert unhashed(script[0]["configMap"]["name"]) == "ml-connector-migrate"
        assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
    # The release order selects the Deployments by this label and nothing else.
    labelled = [
        o["kind"]
        for o in overlay
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "service"
    ]
    assert labelled == ["Deployment"] * len(SERVICES)


# --- the Ingress ----------------------------------------------------------------------------------


def webhook_paths() -> list[str]:
    described = yaml.safe_load((ROOT / "docs/ingress-openapi.yaml").read_text())["paths"]
    return [p for p in described if p.startswith("/webhooks/")]


def routed(rules: list[dict], path: str) -> bool:
    """Kubernetes Ingress path matching: Exact, or Prefix element by element."""
    for rule in rules:
        for entry in rule["http"]["paths"]:
            if entry["pathType"] == "Exact" and path == entry["path"]:
                return True
            if entry["pathType"] == "Prefix":
                prefix = entry["path"].rstrip("/").split("/")
                if path.split("/")[: len(prefix)] == prefix:
                    return True
    return False


def test_the_ingress_exposes_only_the_webhook_paths_over_tls(production):
    (ingress,) = of_kind(production, "Ingress")
    spec = ingress["spec"]
    assert spec["ingressClassName"]
    rules = spec["rules"]
    hosts = {r["host"] for r in rules}
    assert hosts <= {h for t in spec["tls"] for h in t["hosts"]}
    assert all(t["secretName"] for t in spec["tls"])
    config = generated(production, "ConfigMap", "ml-connector-config")["data"]
    assert hosts == {urlsplit(config["MLC_PUBLIC_BASE_URL"]).hostname}
    paths = webhook_paths()
    assert len(paths) == 5
    for path in paths:
        assert routed(rules, path.replace("{connection_id}", "acme")), path
    for path in [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/trail",
        "/admin/retry",
        "/webhooks",
        "/webhooks/twilio",
        "/webhooks/twilio/status/x",
        "/webhooks/other",
    ]:
        assert not routed(rules, path), path
    ingress_port = {p["port"] for p in named(production, "Service", "ingress")["spec"]["ports"]}
    for rule in rules:
        for entry in rule["http"]["paths"]:
            assert entry["backend"]["service"]["name"] == "ingress"
            assert entry["backend"]["service"]["port"]["number"] in ingress_port


def test_everything_the_overlays_create_is_labelled_as_part_of_the_install(overlay):
    # `kubectl get,delete ... -l app.kubernetes.io/part-of=ml-connector` finds all of it
    for obj in overlay:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "ml-connector", obj["metadata"]["name"]


def test_every_image_is_named_with_a_tag_and_the_project_runs_one_image(overlay):
    images = {c["image"] for w in of_kind(overlay, *WORKLOADS) for c in containers(w)}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name, image
        assert "/" not in tag, image
        assert tag not in ("", "latest"), image
    project = {
        c["image"]
        for w in of_kind(overlay, *WORKLOADS)
        for c in containers(w)
        if c.get("command", [""])[0].startswith("mlc-")
        or c.get("command", [])[:2] == ["python", "/opt/mlc/migrate.py"]
    }
    assert len(project) == 1, project
    assert project <= images
