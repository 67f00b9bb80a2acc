"""House rules for the layout (STYLE.md): engine/'s root holds only what every stage shares."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Command-line modules live in engine/cli/, stage helpers in their stage's package.
ENGINE_ROOT_MODULES = {"__init__.py", "__main__.py", "clock.py", "config.py", "errors.py", "timeutil.py"}


def test_engine_root_is_not_a_drawer() -> None:
    modules = {path.name for path in (ROOT / "engine").glob("*.py")}
    assert modules == ENGINE_ROOT_MODULES, sorted(modules ^ ENGINE_ROOT_MODULES)


def test_only_the_command_line_reads_the_wall_clock_by_default() -> None:
    """One injected clock: every engine function that stamps or decides takes `clock` from its
    caller. A default of `system_clock` would let a caller forget it (as the policy API once
    did) and stamp a record with the wall clock under a test's or `--at`'s clock. Only the
    command line, where a process starts, picks the wall clock."""
    defaults = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "engine").rglob("*.py"))
        if path.parent.name != "cli" and path.name != "clock.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "= system_clock" in line
    ]
    assert defaults == []
