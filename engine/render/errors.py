"""The render stage's errors.

    ConsentryError
     └── RenderError
          ├── TemplateNotFound         no template file where FORMATS.md says to look (exit 2)
          ├── InvalidTemplateError     syntax error, unreadable file, include/extends (exit 2)
          ├── UndefinedVariableError   a variable the context does not have (exit 2)
          ├── TemplateSecurityError    a template reached for Python internals (exit 2)
          ├── TemplateRenderError      any other failure while rendering (exit 2)
          ├── ComplianceError          a bulk message cannot carry what the law requires
          └── InvalidHeaderError       a value that cannot go into a header as it is
               └── HeaderInjectionError    ... because it contains CR or LF

Template errors raised by `compile_campaign_templates` stop a launch. The same classes raised
by a per-recipient `render` concern that one recipient: the pipeline records the delivery
as failed with `str(exc)` and carries on (`InvalidHeaderError` for a bad address, most often).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import ConsentryError


class RenderError(ConsentryError):
    """Base of every error of the render stage."""

    exit_code = 2

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take other arguments than the message: rebuild from the attributes, so
        # the errors survive pickling (a worker process reporting to its parent, arq).
        return (_rebuild, (type(self), str(self), self.__dict__))


def _rebuild(cls: type[RenderError], message: str, state: dict[str, object]) -> RenderError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class TemplateNotFound(RenderError):
    """No template file for `name` in any of the places searched (in search order)."""

    def __init__(self, name: str, searched: Sequence[str], *, hint: str | None = None) -> None:
        self.name = name
        self.searched = tuple(searched)
        self.hint = hint
        places = ", ".join(self.searched) or "nowhere"
        message = f"template {name!r} not found (searched: {places})"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class InvalidTemplateError(RenderError):
    """A template that cannot be compiled; `origin` is its file (or a label), `line` 1-based."""

    def __init__(self, origin: str, message: str, *, line: int | None = None) -> None:
        self.origin = origin
        self.line = line
        self.message = message
        where = f"{origin}:{line}" if line is not None else origin
        super().__init__(f"{where}: {message}")


class UndefinedVariableError(RenderError):
    """A template used `variable`, which the context does not have (or an attribute of it)."""

    def __init__(self, origin: str, variable: str | None, message: str) -> None:
        self.origin = origin
        self.variable = variable
        self.message = message
        super().__init__(f"{origin}: {message}")


class TemplateSecurityError(RenderError):
    """A template tried to reach Python internals or to exhaust memory; nothing was rendered."""

    def __init__(self, origin: str, message: str) -> None:
        self.origin = origin
        self.message = message
        super().__init__(f"{origin}: unsafe template: {message}")


class TemplateRenderError(RenderError):
    """A template failed while rendering for another reason (a division by zero, a bad type)."""

    def __init__(self, origin: str, message: str) -> None:
        self.origin = origin
        self.message = message
        super().__init__(f"{origin}: {message}")


class ComplianceError(RenderError):
    """A message is missing something the law requires (a bulk email without a postal address)."""


class InvalidHeaderError(RenderError, ValueError):
    """`value` cannot be written into the header `field` (a malformed address, message id...)."""

    def __init__(self, field: str, value: str, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field}: {message}: {value!r}")


class HeaderInjectionError(InvalidHeaderError):
    """A CR or LF in a structured header value: written as is, it would start a new header."""

    def __init__(self, field: str, value: str) -> None:
        super().__init__(field, value, "contains a line break (header injection)")
