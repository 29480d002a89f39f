"""The rendered NetworkPolicies, evaluated as a cluster evaluates them: every ml-connector pod is
isolated in both directions, and exactly the flows of docs/architecture.md are open, between
the pods of the install and with the world outside it (the Ingress controller, Prometheus,
DNS, the vendors' HTTPS)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest
from k8s_render import SERVICES, WORKLOADS, of_kind, pod_labels, render

#: The install's namespace in these evaluations.
NAMESPACE = "ml-connector"
SCHEMA_OWNERS = ("enricher", "dispatcher", "auditor", "token-keeper")
MIGRATIONS = tuple(f"{s}-migrate" for s in SCHEMA_OWNERS)
#: Each service's HTTP port (webhooks for ingress; health and metrics for all).
PORTS = {
    "ingress": 8080,
    "enricher": 8081,
    "dispatcher": 8082,
    "auditor": 8083,
    "token-keeper": 8084,
}


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (its labels and namespace) or an address outside."""

    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    namespace: str | None = NAMESPACE
    namespace_labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    address: str = "10.244.0.10"  # a pod address; addresses outside the cluster are public
    ports: dict[str, int] = field(default_factory=dict, hash=False, compare=False)


def selects(selector: dict, labels: dict[str, str]) -> bool:
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


def peer_matches(rule_peer: dict, peer: Peer) -> bool:
    """A NetworkPolicyPeer: a podSelector alone means this namespace; with a namespaceSelector,
    the namespaces it selects; an ipBlock, an address (pods are not reached by address here)."""
    if "ipBlock" in rule_peer:
        if peer.namespace is not None:
            return False
        address = ipaddress.ip_address(peer.address)
        block = rule_peer["ipBlock"]
        if address.version != ipaddress.ip_network(block["cidr"]).version:
            return False
        inside = address in ipaddress.ip_network(block["cidr"])
        excepted = any(
            address in ipaddress.ip_network(e)
            for e in block.get("except", [])
            if ipaddress.ip_network(e).version == address.version
        )
        return inside and not excepted
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        labels = {"kubernetes.io/metadata.name": peer.namespace, **peer.namespace_labels}
        if not selects(rule_peer["namespaceSelector"], labels):
            return False
    elif peer.namespace != NAMESPACE:
        return False
    return selects(rule_peer.get("podSelector", {}), peer.labels)


def port_matches(rule: dict, port: int, protocol: str, destination: Peer) -> bool:
    """A rule's ports: a number (or range), or a name the destination pod gives a port."""
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        if entry.get("protocol", "TCP") != protocol:
            continue
        first = entry["port"]
        if isinstance(first, str):
            if destination.ports.get(first) == port:
                return True
        elif first <= port <= entry.get("endPort", first):
            return True
    return False


def allowed(
    policies: list[dict], direction: str, pod: Peer, other: Peer, port: int, protocol: str
) -> bool:
    """Is ``pod`` allowed to talk to (Egress) or hear from (Ingress) ``other`` on the port?
    A pod selected by no policy of that direction is not isolated; ours always are."""
    if pod.namespace != NAMESPACE:
        return True  # not ours: no policy of this install isolates it
    selecting = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    destination = other if direction == "Egress" else pod
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            if not port_matches(rule, port, protocol, destination):
                continue
            if peers not in rule or any(peer_matches(p, other) for p in rule[peers]):
                return True
    return False


def connects(policies: list[dict], source: Peer, target: Peer, port: int) -> bool:
    return allowed(policies, "Egress", source, target, port, "TCP") and allowed(
        policies, "Ingress", target, source, port, "TCP"
    )


def pods(objects: tuple[dict, ...]) -> dict[str, Peer]:
    """The install's pods, one per workload, with their labels and named ports."""
    found = {}
    for workload in of_kind(objects, *WORKLOADS):
        name = workload["metadata"]["name"]
        named = {
            p["name"]: p["containerPort"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        found[name] = Peer(name, pod_labels(workload), ports=named)
    return found


def listening(objects: tuple[dict, ...]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for workload in of_kind(objects, *WORKLOADS):
        ports = found.setdefault(workload["metadata"]["name"], set())
        for container in workload["spec"]["template"]["spec"]["containers"]:
            ports |= {p["containerPort"] for p in container.get("ports", [])}
    return found


#: Pods a production install talks to that it does not run (in the same namespace here).
BROKER = Peer("rabbitmq", {"app.kubernetes.io/name": "rabbitmq"})
DATABASE = Peer("postgres", {"app.kubernetes.io/name": "postgres"})
INGRESS_CONTROLLER = Peer(
    "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, namespace="ingress-nginx"
)
PROMETHEUS = Peer("prometheus", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
DNS = Peer("coredns", {"k8s-app": "kube-dns"}, namespace="kube-system")
STRANGER = Peer("stranger", {"app": "something"}, namespace="default")
VENDOR = Peer("api.twilio.com", namespace=None, address="54.172.60.0")
PRIVATE = Peer("a private address", namespace=None, address="10.0.12.7")
METADATA = Peer("cloud metadata", namespace=None, address="169.254.169.254")

EXPECTED = {
    "production": {
        *((s, "rabbitmq", 5672) for s in SERVICES),
        *((s, "postgres", 5432) for s in SCHEMA_OWNERS + MIGRATIONS),
    },
    "simulated": {
        *((s, "rabbitmq", 5672) for s in SERVICES),
        *((s, "postgres", 5432) for s in SCHEMA_OWNERS + MIGRATIONS),
        ("enricher", "sim-exact", 8090),
        ("token-keeper", "sim-exact", 8090),
        ("dispatcher", "sim-twilio", 8091),
        ("token-keeper", "sim-twilio", 8091),
        ("sim-exact", "ingress", 8080),
        ("sim-twilio", "ingress", 8080),
    },
}


@pytest.mark.parametrize("overlay_name", ["production", "simulated"])
def test_every_pod_is_isolated_both_ways_by_a_default_deny(overlay_name):
    objects = render(overlay_name)
    policies = of_kind(objects, "NetworkPolicy")
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny
    for pod in pods(objects).values():
        for direction in ("Ingress", "Egress"):
            assert any(
                direction in p["spec"]["policyTypes"]
                and selects(p["spec"]["podSelector"], pod.labels)
                for p in deny
            ), (pod.name, direction)
        for port in (22, 80, 443, 5432, 5672, 8080):
            assert not connects(policies, STRANGER, pod, port), (pod.name, port)
            assert not connects(policies, pod, STRANGER, port), (pod.name, port)


@pytest.mark.parametrize("overlay_name", ["production", "simulated"])
def test_the_pods_of_the_install_reach_each_other_only_along_the_architecture(overlay_name):
    objects = render(overlay_name)
    policies = of_kind(objects, "NetworkPolicy")
    ours = set(pods(objects))
    everyone = pods(objects)
    everyone.setdefault("rabbitmq", BROKER)
    everyone.setdefault("postgres", DATABASE)
    ports = {p for ps in listening(objects).values() for p in ps} | {5432, 5672, 15672, 15692}
    open_flows = {
        (source, target, port)
        for source, s in everyone.items()
        for target, t in everyone.items()
        for port in ports
        if source != target and {source, target} & ours and connects(policies, s, t, port)
    }
    assert open_flows == EXPECTED[overlay_name]


@pytest.mark.parametrize("overlay_name", ["production", "simulated"])
def test_from_outside_only_the_ingress_controller_and_prometheus_get_in(overlay_name):
    objects = render(overlay_name)
    policies = of_kind(objects, "NetworkPolicy")
    listens = listening(objects)
    for name, pod in pods(objects).items():
        for port in listens[name] | {8080}:
            from_controller = connects(policies, INGRESS_CONTROLLER, pod, port)
            assert from_controller == (name == "ingress" and port == 8080), (name, port)
            from_prometheus = connects(policies, PROMETHEUS, pod, port)
            expected = (name in SERVICES and port == PORTS[name]) or (name, port) == (
                "rabbitmq",
                15692,
            )
            assert from_prometheus == expected, (name, port)


@pytest.mark.parametrize("overlay_name", ["production", "simulated"])
def test_only_the_vendor_clients_leave_the_cluster_and_only_on_https(overlay_name):
    objects = render(overlay_name)
    policies = of_kind(objects, "NetworkPolicy")
    clients = {"enricher", "dispatcher", "token-keeper"}
    for name, pod in pods(objects).items():
        assert allowed(policies, "Egress", pod, DNS, 53, "UDP"), name
        assert allowed(policies, "Egress", pod, DNS, 53, "TCP"), name
        assert allowed(policies, "Egress", pod, VENDOR, 443, "TCP") == (name in clients), name
        for port in (80, 25, 5432, 8443):
            assert not allowed(policies, "Egress", pod, VENDOR, port, "TCP"), (name, port)
        for inside in (PRIVATE, METADATA):
            assert not allowed(policies, "Egress", pod, inside, 443, "TCP"), (name, inside)
