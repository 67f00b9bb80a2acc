"""The OpenAPI 3.1 document of /api/v1, served at GET /api/v1/openapi.json (docs/api.md).

Each API module declares its own path items (`OPENAPI_PATHS`) and named schemas
(`OPENAPI_COMPONENTS`, named after the module's resource); this module merges those of
every module the application registers (engine/api/app.py `MODULES`) with the shared parts
below. tests/api/test_openapi.py fails when a route under /api/v1 is not documented or a
documented one does not exist, and when docs/openapi.json (the committed copy, written by
`make openapi`) differs from what is served.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from aiohttp import web

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "build_document", "routes"]

routes = web.RouteTableDef()
VERSION = "1.0.0"

# Shared by every module's operations: reference them as "#/components/responses/Name".
_RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": {
        "description": "the body is not usable JSON (too deeply nested)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
    "Unauthorized": {
        "description": "no valid API key (Authorization: Bearer KEY)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
    "Forbidden": {
        "description": "the key's role may not do this",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
    "NotFound": {
        "description": "no such resource in the key's tenant",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
    "Conflict": {
        "description": "the request conflicts with stored state",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
    "PayloadTooLarge": {
        "description": "the body is larger than 1 MiB",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
    "Invalid": {
        "description": "bad input: every problem with the field it is about",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InputProblem"}}},
    },
}

_PARAMETERS: dict[str, dict[str, Any]] = {
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "repeat a request safely: the same key with the same body returns the first response "
        "(header Idempotent-Replayed: true); with another body it is a 422. Kept per tenant.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~][ -~]*$"},
    },
}

_RFC9457: dict[str, Any] = {
    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `error` repeats `detail`",
        "required": ["error"],
        "properties": {**_RFC9457, "error": {"type": "string"}},
    },
    "InputProblem": {
        "type": "object",
        "description": "RFC 9457 problem details with every invalid field",
        "required": ["errors"],
        "properties": {**_RFC9457,
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {
                        # The dotted path into the body (contacts[3].email), the query
                        # parameter or header; null when the whole body is wrong.
                        "field": {"type": ["string", "null"]},
                        "message": {"type": "string"},
                    },
                },
            }
        },
    },
}

OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApiDocument",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "the OpenAPI 3.1 document", "content": {"application/json": {"schema": {"type": "object"}}}}},
        }
    }
}
OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {}


def secured(responses: dict[str, Any], *, body: bool = False, not_found: bool = False) -> dict[str, Any]:
    """An operation's responses plus the ones every keyed endpoint may give."""
    shared = {"401": "Unauthorized", "403": "Forbidden", "422": "Invalid"}
    if not_found:
        shared["404"] = "NotFound"
    if body:
        shared.update({"400": "BadRequest", "413": "PayloadTooLarge"})
    return {**responses, **{status: {"$ref": f"#/components/responses/{name}"} for status, name in shared.items()}}


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"required": True, "description": description, "content": {"application/json": {"schema": schema}}}


def json_response(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def build_document(modules: Iterable[ModuleType]) -> dict[str, Any]:
    """The document from the path items and schemas the modules declare."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, dict[str, Any]] = dict(_SCHEMAS)
    for module in modules:
        for path, item in getattr(module, "OPENAPI_PATHS", {}).items():
            merged = paths.setdefault(path, {})
            clash = set(merged) & set(item)
            if clash:
                raise RuntimeError(f"{module.__name__} documents {sorted(clash)} {path} again")
            merged.update(item)
        for name, schema in getattr(module, "OPENAPI_COMPONENTS", {}).items():
            if name in schemas and schemas[name] != schema:
                raise RuntimeError(f"{module.__name__} redefines the schema {name}")
            schemas[name] = schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Consentry API",
            "version": VERSION,
            "description": "Contacts, consent, campaigns and webhooks of one tenant: the tenant is always the API "
            "key's. Errors are JSON problems; bad input is a 422 listing each field (docs/api.md).",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "an API key (consentry api-key create)"}},
            "responses": _RESPONSES,
            "parameters": _PARAMETERS,
            "schemas": dict(sorted(schemas.items())),
        },
    }


def application_document() -> dict[str, Any]:
    # Imported here: engine.api.app imports this module to register its route.
    from engine.api.app import MODULES

    return build_document(MODULES)


def document_text() -> str:
    """The document as served and as committed in docs/openapi.json."""
    return json.dumps(application_document(), indent=2, ensure_ascii=False) + "\n"


@routes.get("/api/v1/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(text=_served(), content_type="application/json")


@functools.cache
def _served() -> str:
    # Built once per process: the modules do not change while it runs.
    return document_text()

