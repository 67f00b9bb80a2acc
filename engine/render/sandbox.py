"""The sandboxed Jinja2 environment every campaign template is compiled in.

Campaign templates are written by tenant staff, not by us, and rendered in shared workers, so
they run in `ImmutableSandboxedEnvironment`:

- no loader: `{% include %}`, `{% extends %}` and `{% import %}` are refused at compile time,
  so a template can read no file;
- attributes starting with `_` and the frame/code attributes of functions and generators
  are refused twice: statically at compile time when the name is written in the template
  (`{{ ''.__class__ }}`), and by the sandbox at render time when it is computed
  (`{{ x|attr('__cla' ~ 'ss__') }}`); both raise `TemplateSecurityError`;
- the obvious memory amplifiers are capped (`'x' * 10**9`, `2 ** 10**9`, padding widths in
  `center`, `ljust`, `format` and `%`). This is a guard against accidents and the easy
  attacks, not a resource limit: workers should still run with a memory limit;
- `StrictUndefined`: a variable the context lacks is an error naming it, never a silent
  empty string (the context gives known-but-empty fields like `first_name` as "").

Whitespace: `trim_blocks` and `lstrip_blocks` are on, so `{% if %}` lines in a text email or
an SMS leave no blank lines or stray indentation behind.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.meta import find_undeclared_variables
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    ImmutableSandboxedEnvironment,
    safe_range,
)

from engine.render.errors import (
    InvalidTemplateError,
    TemplateRenderError,
    TemplateSecurityError,
    UndefinedVariableError,
)

# Largest string or list a template may build with `*`: far above any message (an SMS is at
# most ~1,600 characters, an email body a few hundred kB), far below a worker's memory.
MAX_REPEAT = 1_000_000
# `**`: enough for any arithmetic a message needs; 2 ** 10**9 would take minutes.
MAX_EXPONENT = 1_000
# Padding widths (center, ljust, rjust, zfill, format specs such as `{:>N}` or `%Ns`).
MAX_WIDTH = 10_000

_UNSAFE_NAMES = frozenset(
    {"mro", "func_globals", "func_code", "func_closure", "f_globals", "f_locals",
     "f_builtins", "f_code", "tb_frame", "tb_next", "co_code"}
    | UNSAFE_GENERATOR_ATTRIBUTES
    | UNSAFE_COROUTINE_ATTRIBUTES
    | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
)
_CHANCE_FILTERS = frozenset({"random"})
_CHANCE_GLOBALS = frozenset({"lipsum"})
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# A width or precision of five digits or more inside a `{...}` or `%` format specification.
_WIDE_BRACE_SPEC = re.compile(r"\{[^{}]*\d{5,}[^{}]*\}")
_WIDE_PERCENT_SPEC = re.compile(r"%[-#0 +]*(?:\(\w*\))?[-#0 +]*\d{5,}|%[-#0 +]*\d*\.\d{5,}")
_UNDEFINED_NAME = re.compile(r"^'(.+)' is undefined$")
_MISSING_ATTRIBUTE = re.compile(r"has no (?:attribute|element) '?([^']*)'?$")


def is_unsafe_attribute(name: str) -> bool:
    """Is `name` an attribute no template may read (`__class__`, `_private`, `gi_frame`)?"""
    return name.startswith("_") or name in _UNSAFE_NAMES


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right!r} is larger than {MAX_EXPONENT}")
        elif isinstance(left, str) and _WIDE_PERCENT_SPEC.search(left):
            raise SecurityError(f"format width larger than {MAX_WIDTH}")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", None)
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(owner, str):
            if name in _PADDING_METHODS:
                _check_widths(args, kwargs)
            elif name in ("format", "format_map") and _WIDE_BRACE_SPEC.search(owner):
                raise SecurityError(f"format width larger than {MAX_WIDTH}")
        return super().call(__context, __obj, *args, **kwargs)


def _check_repeat(sequence: Any, count: Any) -> None:
    if isinstance(sequence, str | list | tuple) and isinstance(count, int):
        if len(sequence) * count > MAX_REPEAT:
            raise SecurityError(f"repetition larger than {MAX_REPEAT} items")


def _check_widths(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and value > MAX_WIDTH:
            raise SecurityError(f"width {value} is larger than {MAX_WIDTH}")


def _capped_filter(filter_function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(filter_function)
    def capped(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_widths(args, kwargs)
        if filter_function.__name__ == "do_format" and isinstance(value, str):
            if _WIDE_PERCENT_SPEC.search(value):
                raise SecurityError(f"format width larger than {MAX_WIDTH}")
        return filter_function(value, *args, **kwargs)

    return capped


@functools.cache
def environment(*, html: bool) -> jinja2.Environment:
    """The sandbox for text (`html=False`) or HTML templates (autoescaped). Shared: a
    Jinja2 environment is safe to use from many threads once configured, and these are never
    changed after creation."""
    env = _Sandbox(
        loader=None,
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=0,
    )
    for name in ("center", "indent", "format"):
        env.filters[name] = _capped_filter(env.filters[name])
    env.globals["range"] = _range
    return env


def _range(*args: int) -> range:
    try:
        return safe_range(*args)
    except OverflowError as exc:  # more than jinja2.sandbox.MAX_RANGE items
        raise SecurityError(str(exc)) from exc


class CompiledTemplate:
    """One compiled template: render it with a context mapping, as often as needed."""

    __slots__ = ("origin", "source", "variables", "is_static", "is_deterministic", "_template", "_static_text")

    def __init__(self, origin: str, source: str, variables: frozenset[str],
                 template: jinja2.Template, is_static: bool, is_deterministic: bool = False) -> None:
        self.origin = origin
        self.source = source
        # The context names the template reads (globals such as `range` excluded).
        self.variables = variables
        # No expression or statement at all: the text is the same for every recipient.
        self.is_static = is_static
        # The output is a function of `variables`' values alone (no `random` filter, no
        # `lipsum`): a render may be remembered for the next recipient with the same values.
        self.is_deterministic = is_deterministic
        self._template = template
        self._static_text = template.render() if is_static else None

    def render(self, context: Mapping[str, Any]) -> str:
        """Render for one recipient. Raises `UndefinedVariableError`, `TemplateSecurityError`
        or `TemplateRenderError`, each naming the template."""
        if self._static_text is not None:
            return self._static_text
        try:
            return self._template.render(context)
        except SecurityError as exc:
            raise TemplateSecurityError(self.origin, str(exc)) from exc
        except UndefinedError as exc:
            message = str(exc)
            name = _undefined_name(message)
            if name is not None and is_unsafe_attribute(name):
                # An unsafe attribute of something the sandbox already refused to give.
                raise TemplateSecurityError(self.origin, message) from exc
            raise UndefinedVariableError(self.origin, name, message) from exc
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError,
                RecursionError) as exc:
            raise TemplateRenderError(self.origin, f"{type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.origin!r})"


def compile_template(
    source: str,
    *,
    origin: str,
    html: bool = False,
    variables: Iterable[str] | None = None,
) -> CompiledTemplate:
    """Compile `source` in the sandbox. `origin` names it in errors (a path, or a label such
    as `campaign.yaml:subject`).

    With `variables`, every context name the template reads must be one of them (or be
    guarded by `is defined`): a typo such as `{{ frist_name }}` then fails here, at launch,
    instead of on every recipient. Raises `InvalidTemplateError`, `TemplateSecurityError`
    or `UndefinedVariableError`.
    """
    env = environment(html=html)
    try:
        ast = env.parse(source, filename=origin)
    except TemplateSyntaxError as exc:
        raise InvalidTemplateError(origin, exc.message or "syntax error", line=exc.lineno) from exc
    _check_statically(ast, origin)
    used = frozenset(find_undeclared_variables(ast)) - env.globals.keys()
    if variables is not None:
        unknown = sorted(used - frozenset(variables) - _guarded_names(ast))
        if unknown:
            allowed = ", ".join(sorted(variables))
            raise UndefinedVariableError(
                origin, unknown[0],
                f"unknown variable {unknown[0]!r} (a template can use: {allowed})",
            )
    is_static = all(
        isinstance(node, nodes.Output)
        and all(isinstance(child, nodes.TemplateData) for child in node.nodes)
        for node in ast.body
    )
    try:
        code = env.compile(ast, filename=origin)
    except TemplateSyntaxError as exc:  # the code generator's own checks
        raise InvalidTemplateError(origin, exc.message or "syntax error", line=exc.lineno) from exc
    # A plain dict rather than Jinja's ChainMap over the environment's globals: every render
    # copies the globals into a new context, and copying a ChainMap costs more than the
    # rest of a small template's render. The environments never change after creation.
    template = env.template_class.from_code(env, code, dict(env.make_globals(None)), None)
    return CompiledTemplate(origin, source, used, template, is_static, _is_deterministic(ast))


def _check_statically(ast: nodes.Template, origin: str) -> None:
    for statement in ast.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)):
        keyword = {nodes.Include: "include", nodes.Extends: "extends"}.get(type(statement), "import")
        raise InvalidTemplateError(
            origin, f"{{% {keyword} %}} is not available: a campaign template is one file",
            line=statement.lineno,
        )
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            if isinstance(node.args[0], nodes.Const):
                name = node.args[0].value
        if isinstance(name, str) and is_unsafe_attribute(name):
            raise TemplateSecurityError(
                f"{origin}:{node.lineno}", f"access to attribute {name!r} is not allowed"
            )


def _is_deterministic(ast: nodes.Template) -> bool:
    """No chance in the template: Jinja2's `random` filter and `lipsum` global are its only
    sources (the sandbox exposes no clock, and nothing a template calls keeps state between
    renders). A filter can also be named by a string (`map('random')`): any such string
    counts, a false alarm costing only the remembered renders."""
    if any(node.name in _CHANCE_FILTERS for node in ast.find_all(nodes.Filter)):
        return False
    if any(node.value in _CHANCE_FILTERS for node in ast.find_all(nodes.Const) if isinstance(node.value, str)):
        return False
    return not any(node.name in _CHANCE_GLOBALS for node in ast.find_all(nodes.Name))


def _guarded_names(ast: nodes.Template) -> set[str]:
    """Names a template only tests with `is defined` / `is undefined`: optional by intent."""
    return {
        test.node.name
        for test in ast.find_all(nodes.Test)
        if test.name in ("defined", "undefined") and isinstance(test.node, nodes.Name)
    }


def _undefined_name(message: str) -> str | None:
    match = _UNDEFINED_NAME.match(message) or _MISSING_ATTRIBUTE.search(message)
    return match.group(1) if match else None
