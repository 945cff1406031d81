"""Customer.io's OpenAPI file as JSON Schema validators, for the tests that check request
bodies against it (the ``openapi`` fixture in conftest.py loads it once per module)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema

OPENAPI = Path(__file__).resolve().parents[2] / "shared" / "reference" / "customerio-track-api-openapi.json"
if not OPENAPI.exists():  # CI lays shared/ beside the clone; a worktree may sit elsewhere
    OPENAPI = Path("/work/shared/reference/customerio-track-api-openapi.json")


def json_schema(node: Any) -> Any:
    """OpenAPI 3.x schema -> JSON Schema: map ``nullable: true`` onto a ``null`` alternative."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: json_schema(value) for key, value in node.items() if key not in ("nullable", "discriminator")}
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def load_openapi() -> dict[str, Any]:
    """The OpenAPI file, its schemas as JSON Schema."""
    return json_schema(json.loads(OPENAPI.read_text()))


def validator(openapi: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    root = {**copy.deepcopy(schema), "components": openapi["components"]}
    return jsonschema.Draft202012Validator(root)


def component(openapi: dict[str, Any], name: str) -> jsonschema.Validator:
    return validator(openapi, {"$ref": f"#/components/schemas/{name}"})


def request_body(openapi: dict[str, Any], path: str, method: str) -> jsonschema.Validator:
    schema = openapi["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return validator(openapi, schema)
