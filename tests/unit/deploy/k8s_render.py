"""The Kubernetes overlays as a cluster would receive them: rendered by kustomize (``kubectl
kustomize``, the same build ``kubectl apply -k`` runs), once per run, and ways to look into
them."""

from __future__ import annotations

import base64
import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("production", "simulated")
SERVICES = ("ingress", "enricher", "dispatcher", "auditor", "token-keeper")
WORKLOADS = ("Deployment", "StatefulSet", "Job")


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    """The objects ``kubectl apply -k deploy/k8s/overlays/<overlay>`` would send."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not installed: the manifests are rendered with `kubectl kustomize` "
            "(kustomize v5), as `kubectl apply -k` renders them"
        )
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    return tuple(d for d in yaml.safe_load_all(built.stdout) if d)


def of_kind(objects: tuple[dict, ...], *kinds: str) -> list[dict]:
    return [o for o in objects if o["kind"] in kinds]


def named(objects: tuple[dict, ...], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def unhashed(name: str) -> str:
    """A generated ConfigMap's or Secret's name without the hash kustomize appends."""
    return re.sub(r"-[bcdfghkmt2-9]{10}$", "", name)


def generated(objects: tuple[dict, ...], kind: str, name: str) -> dict:
    """A ConfigMap or Secret by the name it was generated under."""
    (found,) = [o for o in objects if o["kind"] == kind and unhashed(o["metadata"]["name"]) == name]
    return found


def secret_data(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]
