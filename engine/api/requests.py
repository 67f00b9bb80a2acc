"""Reading JSON API requests: bodies and query parameters, with errors that name the field."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from engine.api.auth import Caller
from engine.errors import InputError
from engine.timeutil import parse_instant

__all__ = ["MAX_JSON_DEPTH", "at_param", "choice_param", "int_param", "json_object", "own_tenant"]

# A policy or a campaign definition nests four or five levels; deeper is a mistake or an
# attack (100,000 `[` would otherwise exhaust the parser's recursion: a 500).
MAX_JSON_DEPTH = 32


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object. Too large a body is a 413 (aiohttp's
    client_max_size), JSON nested deeper than MAX_JSON_DEPTH a 400."""
    raw = await request.read()
    try:
        # Any content type: curl's default (form-urlencoded) carrying JSON is still JSON.
        body = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of more than 4,300 digits
        raise InputError(f"the body is not JSON: {exc}") from None
    if _deeper_than(body, MAX_JSON_DEPTH):
        raise _too_deep()
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    return body


def _too_deep() -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"the body nests JSON deeper than {MAX_JSON_DEPTH} levels (the limit)")


def _deeper_than(value: Any, limit: int) -> bool:
    """Does `value` nest arrays and objects more than `limit` levels? Without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def own_tenant(body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """The body with `tenant` set to the key's tenant: absent means the key's own, another
    one is an error (a key never reaches another tenant, not even to learn it exists)."""
    given = body.get("tenant")
    if given is None:
        return {**body, "tenant": caller.tenant_code}
    if given != caller.tenant_code:
        raise InputError(f"this API key belongs to tenant {caller.tenant_code!r}", field="tenant")
    return body


def at_param(request: web.Request, now_us: int) -> int:
    """`?at=ISO8601` (with an offset) or now."""
    value = request.query.get("at")
    if value is None or value == "":
        return now_us
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise InputError(f"{value!r} is not an ISO 8601 instant with an offset ({exc})", field="at") from None


def choice_param(request: web.Request, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    value = request.query.get(name, default)
    if value is None or value == "":
        raise InputError(f"required (one of {', '.join(allowed)})", field=name)
    if value not in allowed:
        raise InputError(f"{value!r} is not one of {', '.join(allowed)}", field=name)
    return value


def int_param(request: web.Request, name: str, default: int | None, low: int, high: int | None) -> int | None:
    """`?name=N`, a whole number from `low` to `high` (None: no bound), or `default`."""
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or len(text) > 18 or int(text) < low or (high is not None and int(text) > high):
        bound = f"{low} to {high}" if high is not None else f"at least {low}"
        raise InputError(f"{text!r} is not a whole number {bound}", field=name)
    return int(text)
