"""YAML documents that remember where each value came from, for errors a person can act on.

A definition is parsed twice: once into plain data, once into PyYAML's node tree, which
keeps the line of every key and value. `line_of(("classes", "service", "mode"))` answers
the line to name in `tenant.yaml:12: classes.service.mode: ...`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from campaigns.errors import InputError


@dataclass(frozen=True, slots=True)
class YamlSource:
    path: str
    data: Any
    root: yaml.Node | None

    def line_of(self, location: Sequence[str | int]) -> int | None:
        """The 1-based line of the deepest node along `location` (a key or an index path)."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for step in location:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(step):
                        # An unknown key is reported on the key's own line.
                        line = key.start_mark.line + 1
                        node = value
                        line = value.start_mark.line + 1 if value.value != "" else line
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                if step >= len(node.value):
                    return line
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, location: Sequence[str | int], message: str) -> InputError:
        field = ".".join(str(step) for step in location) or None
        return InputError(message, path=self.path, line=self.line_of(location), field=field)


def load_yaml(path: str | Path) -> YamlSource:
    """Read a YAML mapping; a syntax error or a non-mapping document is an InputError."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=shown) from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> YamlSource:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise InputError(f"invalid YAML: {exc.problem}", path=shown, line=line) from None
    if not isinstance(data, dict):
        raise InputError("expected a mapping of keys to values", path=shown, line=1)
    return YamlSource(shown, data, root)


def pydantic_errors(source: YamlSource, exc: Any) -> list[InputError]:
    """Turn a pydantic ValidationError into located InputErrors, one per problem."""
    return located(source, exc.errors())


class LocatedValueError(ValueError):
    """A cross-field problem that belongs to one field: raised from a model validator, it
    is reported at `location` (relative to the model that raised it), not at the model."""

    def __init__(self, location: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.location = location


def located(source: YamlSource, problems: Any) -> list[InputError]:
    """Located InputErrors for pydantic error dicts."""
    errors = []
    for problem in problems:
        location = [step for step in problem["loc"] if not _is_union_tag(step)]
        context = problem.get("ctx", {}).get("error")
        if isinstance(context, LocatedValueError):
            errors.append(source.error([*location, *context.location], str(context)))
            continue
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        errors.append(source.error(location, message))
    return errors


def _is_union_tag(step: object) -> bool:
    # pydantic inserts the chosen union member ("function-after[...]", "literal[...]")
    return isinstance(step, str) and ("[" in step or step.startswith("function-"))
