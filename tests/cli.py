"""Run the real `consentry` command line in-process and capture what a user would see."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from engine.cli import main


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def consentry(*args: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(arg) for arg in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def ok(*args: str) -> Result:
    result = consentry(*args)
    assert result.code == 0, f"consentry {' '.join(map(str, args))} exited {result.code}: {result.err}{result.out}"
    return result
