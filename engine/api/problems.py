"""Error responses of the JSON API, one shape for all of them: RFC 9457 problem details.

Every error carries the RFC 9457 members `type` (`about:blank`: the status says it all),
`title` (the status's reason phrase), `status` and `detail`, plus `error` (the same text as
`detail`, the member clients of the first API read). Bad input (422) lists every problem as
`errors: [{"field": ..., "message": ...}]`, the field being the dotted path into the
request body, the query parameter or the header, so a client can point at it. The media
type stays `application/json`, which every client parses; the members are RFC 9457's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus

from aiohttp import web

from engine.errors import ConflictError, InputError, InputErrors, NotFoundError

__all__ = ["api_errors", "input_problem", "problem"]


def _details(status: int, detail: str) -> dict[str, object]:
    return {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}


def problem(status: int, message: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({**_details(status, message), "error": message}, status=status, headers=headers)


def input_problem(errors: InputError | InputErrors | Iterable[InputError]) -> web.Response:
    """422 listing every input error with its field."""
    if isinstance(errors, InputError):
        items = [errors]
    elif isinstance(errors, InputErrors):
        items = errors.errors
    else:
        items = list(errors)
    body = [{"field": error.field, "message": error.message} for error in items]
    detail = f"{len(body)} field{'s' if len(body) != 1 else ''} of the request {'are' if len(body) != 1 else 'is'} invalid"
    return web.json_response({**_details(422, detail), "errors": body}, status=422)


def _without_dashes(error: InputError) -> InputError:
    # Engine functions shared with the CLI name their option (`--class`); here it is a
    # query parameter or a body field.
    if error.field and error.field.startswith("--"):
        return InputError(error.message, path=error.path, line=error.line, field=error.field[2:])
    return error


@web.middleware
async def api_errors(request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
    """Consentry's typed errors raised under /api/ as JSON problems: bad input 422, unknown
    tenant/contact/campaign 404, a conflict with stored state 409."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except InputErrors as exc:
        return input_problem([_without_dashes(error) for error in exc.errors])
    except InputError as exc:
        return input_problem(_without_dashes(exc))
    except NotFoundError as exc:
        return problem(404, str(exc))
    except ConflictError as exc:
        return problem(409, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        # aiohttp's default text is "404: Not Found"; a handler's own text says more.
        text = exc.text or ""
        message = exc.reason if not text or text.startswith(f"{exc.status}: ") else text
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem(exc.status, message, headers=headers)
