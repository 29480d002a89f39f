"""docs/ingress-openapi.yaml stays true to the routes ingress registers (no route missing or
invented) and documents what every webhook route can answer to any caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ingress.app import create_app
from ingress.guards import no_route
from ingress.settings import Settings

DOC = Path(__file__).parents[3] / "docs" / "ingress-openapi.yaml"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = yaml.safe_load(DOC.read_text())
    assert isinstance(loaded, dict)
    return loaded


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def registered_routes() -> set[tuple[str, str]]:
    """What create_app registers (building the app opens no connection: that is on startup),
    but the catch-all that answers 404 / 405 for everything else: it is not an endpoint."""
    routes = create_app(Settings()).router.routes()
    assert [route.method for route in routes if route.handler is no_route] == ["*"]
    return {
        (route.resource.canonical, route.method)
        for route in routes
        if route.handler is not no_route and route.resource is not None
    }


def webhook_operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, item["post"]) for path, item in doc["paths"].items() if "webhooks" in path]


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/components/...``) to the object it names."""
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_document_is_openapi_3_0():
    loaded = yaml.safe_load(DOC.read_text())
    assert loaded["openapi"].startswith("3.0.")


def test_documented_paths_and_methods_equal_the_registered_routes(doc):
    assert documented_operations(doc) == registered_routes()


def test_every_webhook_route_documents_the_rate_limit_with_retry_after(doc):
    for path, operation in webhook_operations(doc):
        refusal = resolve(doc, operation["responses"]["429"])
        assert "Retry-After" in refusal["headers"], path


def test_every_webhook_route_documents_refusals_and_no_5xx_but_503(doc):
    for path, operation in webhook_operations(doc):
        codes = set(operation["responses"])
        assert {"200", "400", "401", "413", "429", "503"} <= codes, path
        assert {code for code in codes if code.startswith("5")} == {"503"}, path


def test_every_callback_route_documents_the_connection_parameter_and_403(doc):
    for path, operation in webhook_operations(doc):
        if "/exact/" in path:
            continue
        names = {resolve(doc, p)["name"] for p in operation["parameters"]}
        assert "connection" in names, path
        assert "403" in operation["responses"], path


def test_every_reference_resolves(doc):
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if "$ref" in node else []
            return own + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(doc):
        assert resolve(doc, {"$ref": ref}), ref
