"""Derive the Twilio simulator's request/response fixtures from Twilio's OpenAPI description.

Reads ``../shared/twilio-oai/twilio_api_v2010.json`` (relative to the repository root; the file
is present on development machines and in CI, not in the repository) and writes one JSON file
per operation into ``simulators/twilio/sim_twilio/openapi/``:

- ``create_message.json`` from operation ``CreateMessage`` (POST .../Messages.json)
- ``create_call.json`` from operation ``CreateCall`` (POST .../Calls.json)
- ``list_message.json`` from operation ``ListMessage`` (GET .../Messages.json): the query
  parameters (the filters the dispatcher's lookup of unsettled sends uses) and the page schema
- ``list_call.json`` from operation ``ListCall`` (GET .../Calls.json), the same for calls

Each file holds a provenance header (source file, its sha256, operationId), the form body as a
JSON Schema (draft 2020-12: ``nullable`` becomes a ``null`` type, ``$ref`` enums are inlined,
descriptions dropped), the operation's ``x-twilio.conditional`` groups with their form parameter
names, and the 201 response schema. The generated files are committed; ``--check`` fails when
they differ from what the spec gives, so a spec update shows up as a diff.

Usage::

    python scripts/derive_twilio_fixture.py [--spec PATH] [--out-dir DIR] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["LIST_OPERATIONS", "OPERATIONS", "derive", "derive_list", "main", "to_json_schema"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT.parent / "shared" / "twilio-oai" / "twilio_api_v2010.json"
DEFAULT_OUT = ROOT / "simulators" / "twilio" / "sim_twilio" / "openapi"

#: Output file -> (path in the spec, operationId). The method is always POST.
OPERATIONS = {
    "create_message.json": ("/2010-04-01/Accounts/{AccountSid}/Messages.json", "CreateMessage"),
    "create_call.json": ("/2010-04-01/Accounts/{AccountSid}/Calls.json", "CreateCall"),
}

#: JSON Schema keywords carried over from the spec; everything else (descriptions, examples,
#: x-twilio PII notes) is dropped.
_KEPT = (
    "type",
    "enum",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
)
_REF_PREFIX = "#/components/schemas/"

#: Output file -> (path in the spec, operationId) of GET list operations.
LIST_OPERATIONS = {
    "list_message.json": ("/2010-04-01/Accounts/{AccountSid}/Messages.json", "ListMessage"),
    "list_call.json": ("/2010-04-01/Accounts/{AccountSid}/Calls.json", "ListCall"),
}


def to_json_schema(node: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Convert one OpenAPI 3.0 schema node into self-contained JSON Schema."""
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith(_REF_PREFIX):
            raise ValueError(f"unsupported $ref {ref}")
        resolved = dict(components[ref.removeprefix(_REF_PREFIX)])
        # A sibling "nullable" next to a $ref applies to the referenced schema.
        if node.get("nullable"):
            resolved["nullable"] = True
        return to_json_schema(resolved, components)
    out: dict[str, Any] = {key: node[key] for key in _KEPT if key in node}
    # Twilio marks formats it does not enforce (MediaUrl items) with x-twilio.ignoreFormat.
    if node.get("x-twilio", {}).get("ignoreFormat"):
        out.pop("format", None)
    if "items" in node:
        out["items"] = to_json_schema(node["items"], components)
    if "properties" in node:
        out["properties"] = {
            name: to_json_schema(child, components) for name, child in node["properties"].items()
        }
    if "required" in node:
        out["required"] = list(node["required"])
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _param_name(snake: str) -> str:
    """``messaging_service_sid`` -> ``MessagingServiceSid`` (the form parameter spelling)."""
    return "".join(part.capitalize() for part in snake.split("_"))


def derive(spec: dict[str, Any], spec_bytes: bytes, path: str, operation_id: str) -> dict[str, Any]:
    """Build the fixture for the POST operation at ``path``."""
    components = spec["components"]["schemas"]
    operation = spec["paths"][path]["post"]
    if operation["operationId"] != operation_id:
        raise ValueError(f"{path}: expected {operation_id}, found {operation['operationId']}")
    content_type = "application/x-www-form-urlencoded"
    body = operation["requestBody"]["content"][content_type]["schema"]
    request = to_json_schema(body, components)
    request = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": body.get("title", operation_id),
        # Twilio ignores parameters it does not know; the spec says nothing either way.
        "additionalProperties": True,
        **request,
    }
    raw_conditional = operation.get("x-twilio", {}).get("conditional", [])
    conditional = [[_param_name(name) for name in group] for group in raw_conditional]
    for group in conditional:
        missing = [name for name in group if name not in request["properties"]]
        if missing:
            raise ValueError(f"{operation_id}: conditional names unknown parameters {missing}")
    created = operation["responses"]["201"]["content"]["application/json"]["schema"]
    response_name = created["$ref"].removeprefix(_REF_PREFIX)
    response_schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": response_name,
        **to_json_schema(created, components),
    }
    path_parameters = {
        p["name"]: to_json_schema(p["schema"], components)
        for p in operation.get("parameters", [])
        if p.get("in") == "path"
    }
    return {
        "provenance": {
            "source_repo": "twilio/twilio-oai",
            "source_path": "spec/json/twilio_api_v2010.json",
            "local_copy": "../shared/twilio-oai/twilio_api_v2010.json",
            "sha256": hashlib.sha256(spec_bytes).hexdigest(),
            "bytes": len(spec_bytes),
            "openapi": spec.get("openapi"),
            "operationId": operation_id,
            "method": "POST",
            "path": path,
            "security": [next(iter(s)) for s in operation.get("security", [])],
            "generated_by": "scripts/derive_twilio_fixture.py",
            "note": "Generated; regenerate instead of editing by hand.",
        },
        "content_type": content_type,
        "path_parameters": path_parameters,
        "request": request,
        "conditional": {
            "x-twilio.conditional": raw_conditional,
            "params": conditional,
            "meaning": "at least one parameter of each group must be present",
        },
        "response": {"status": 201, "schema_name": response_name, "schema": response_schema},
    }


def derive_list(
    spec: dict[str, Any], spec_bytes: bytes, path: str, operation_id: str
) -> dict[str, Any]:
    """Build the fixture for the GET list operation at ``path``: its query parameters, in the
    spec's order and spelling (``DateSent>`` is a parameter name), and the 200 page schema."""
    components = spec["components"]["schemas"]
    operation = spec["paths"][path]["get"]
    if operation["operationId"] != operation_id:
        raise ValueError(f"{path}: expected {operation_id}, found {operation['operationId']}")
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return {
        "provenance": {
            "source_repo": "twilio/twilio-oai",
            "source_path": "spec/json/twilio_api_v2010.json",
            "local_copy": "../shared/twilio-oai/twilio_api_v2010.json",
            "sha256": hashlib.sha256(spec_bytes).hexdigest(),
            "bytes": len(spec_bytes),
            "openapi": spec.get("openapi"),
            "operationId": operation_id,
            "method": "GET",
            "path": path,
            "generated_by": "scripts/derive_twilio_fixture.py",
            "note": "Generated; regenerate instead of editing by hand.",
        },
        "path_parameters": {
            p["name"]: to_json_schema(p["schema"], components)
            for p in operation.get("parameters", [])
            if p.get("in") == "path"
        },
        "query_parameters": {
            p["name"]: to_json_schema(p["schema"], components)
            for p in operation.get("parameters", [])
            if p.get("in") == "query"
        },
        "response": {
            "status": 200,
            "schema_name": page.get("title", operation_id),
            "schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                **to_json_schema(page, components),
            },
        },
    }


def render(fixture: dict[str, Any]) -> str:
    """The exact text written to disk (stable, so ``--check`` can compare)."""
    return json.dumps(fixture, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every fixture; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    if not args.spec.is_file():
        print(f"spec not found: {args.spec}", file=sys.stderr)
        # Without the upstream description there is nothing to compare the fixtures against.
        return 0 if args.check else 2
    spec_bytes = args.spec.read_bytes()
    spec = json.loads(spec_bytes)
    stale = []
    derived = {
        **{f: (derive, p, o) for f, (p, o) in OPERATIONS.items()},
        **{f: (derive_list, p, o) for f, (p, o) in LIST_OPERATIONS.items()},
    }
    for filename, (build, path, operation_id) in derived.items():
        text = render(build(spec, spec_bytes, path, operation_id))
        target = args.out_dir / filename
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(str(target))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    if stale:
        print("stale fixtures (run scripts/derive_twilio_fixture.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
