"""Consentry's error hierarchy (shared by campaigns/ and engine/).

    ConsentryError
     ├── InputError          bad input (exit 2): carries path, line, field
     ├── InputErrors         every bad row of one input, all reported (exit 2)
     ├── NotFoundError       a tenant, contact or campaign that does not exist (exit 2)
     └── ConflictError       the request contradicts stored state (exit 1)

The CLI prints `str(exc)` on one line per error, never a traceback unless --debug.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConsentryError(Exception):
    exit_code = 1


@dataclass(eq=False)
class InputError(ConsentryError):
    """Bad input; prints as `path:line: field: message` (parts that are unknown are left out)."""

    message: str
    path: str | None = None
    line: int | None = None
    field: str | None = None
    exit_code = 2

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class InputErrors(ConsentryError):
    """Every bad row of one input, in order."""

    exit_code = 2

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class NotFoundError(ConsentryError):
    exit_code = 2


class ConflictError(ConsentryError):
    exit_code = 1
