"""Error responses of the JSON API, one shape for all of them.

`{"error": message}` with the HTTP status; bad input (422) lists every problem as
`{"errors": [{"field": ..., "message": ...}]}`, the field being the dotted path into the
request body or the query parameter, so a client can point at it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web

from engine.errors import InputError, InputErrors

__all__ = ["input_problem", "problem"]


def problem(status: int, message: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def input_problem(errors: InputError | InputErrors | Iterable[InputError]) -> web.Response:
    """422 listing every input error with its field."""
    if isinstance(errors, InputError):
        items = [errors]
    elif isinstance(errors, InputErrors):
        items = errors.errors
    else:
        items = list(errors)
    body = [{"field": error.field, "message": error.message} for error in items]
    return web.json_response({"errors": body}, status=422)
