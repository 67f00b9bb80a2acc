"""The OpenAPI document: served, committed, complete, and honoured by the running service.

- every aiohttp route under /api/v1 is documented and every documented operation exists;
- docs/openapi.json is exactly what the service serves (regenerate with `make openapi`);
- schemathesis, against the served document on the real loopback server, finds no 5xx and
  no response that disagrees with its schema.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from engine.api import build_app
from engine.config import Settings
from tests.api.conftest import CLOCK, Api

REPO = Path(__file__).resolve().parents[2]
METHODS = {"get", "put", "post", "delete", "patch"}


def documented(document: dict) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item if method in METHODS}


def served_routes() -> set[tuple[str, str]]:
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:", webhook_dispatch=False)
    app = build_app(settings, clock=CLOCK)
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and (path.startswith("/api/v1/") or path == "/healthz"):
            routes.add((path, route.method))
    return routes


async def fetch_document(api: Api) -> tuple[int, str]:
    async with api.session.get(api.url("/api/v1/openapi.json")) as response:
        return response.status, await response.text()


async def test_every_route_is_documented_and_every_documented_operation_exists(api: Api) -> None:
    status, text = await fetch_document(api)
    assert status == 200
    document = json.loads(text)
    assert document["openapi"].startswith("3.1")
    routes = served_routes()
    assert {route for route in routes if route[0].startswith("/api/v1/")} - documented(document) == set()
    assert documented(document) - routes == set()
    # One operationId per operation, as generated clients name their methods.
    ids = [op["operationId"] for item in document["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids)) == len(documented(document))


async def test_committed_document_is_the_served_one(api: Api) -> None:
    _status, text = await fetch_document(api)
    committed = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == text, "docs/openapi.json is stale: run `make openapi`"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_schemathesis_finds_no_server_error_or_schema_mismatch(api: Api, tmp_path: Path) -> None:
    """A bounded run: 20 examples per operation, with an admin key (every operation is
    allowed to it, so the examples reach the handlers)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", api.url("/api/v1/openapi.json"),
        "--url", api.base_url, "--max-examples", "20", "--seed", "1", "--workers", "1",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--exclude-path", "/healthz",
        "--header", f"Authorization: Bearer {api.keys[('acme-motors', 'admin')]}",
        "--generation-database", "none",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # its cache directory (.schemathesis/) stays out of the repository
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=500)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
