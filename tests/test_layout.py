"""House rules for the layout (STYLE.md): engine/'s root holds only what every stage shares."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Command-line modules live in engine/cli/, stage helpers in their stage's package.
ENGINE_ROOT_MODULES = {"__init__.py", "__main__.py", "clock.py", "config.py", "errors.py", "timeutil.py"}


def test_engine_root_is_not_a_drawer() -> None:
    modules = {path.name for path in (ROOT / "engine").glob("*.py")}
    assert modules == ENGINE_ROOT_MODULES, sorted(modules ^ ENGINE_ROOT_MODULES)
