"""The house rules of gating/: pure, stdlib only, small modules that say what they are for."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import gating

PACKAGE = Path(gating.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
ALLOWED = {"gating", "__future__"} | set(sys.stdlib_module_names)
FORBIDDEN_STDLIB = {"logging", "time", "socket", "asyncio", "os", "io", "subprocess", "random", "threading", "urllib", "http"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_imports_only_the_standard_library(path):
    roots = imported_roots(path)
    assert roots <= ALLOWED, roots - ALLOWED
    assert not roots & FORBIDDEN_STDLIB


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_is_small_and_says_what_it_must_never_do(path):
    source = path.read_text()
    assert len(source.splitlines()) < 400
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert docstring, f"{path.name} has no module docstring"
    if path.name != "__init__.py":
        assert "never" in docstring, f"{path.name} does not say what it must never do"


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_no_clock_reads(path):
    source = path.read_text()
    for call in ("datetime.now(", ".now(", "utcnow(", "today(", "perf_counter(", "monotonic("):
        assert call not in source, f"{path.name} reads the clock ({call})"


def test_public_api():
    assert set(gating.__all__) >= {
        "Reason", "Send", "SEND", "Suppress", "Defer", "Decision", "TenantPolicy", "PolicyError", "Message",
        "compile_policy", "CompiledPolicy", "ContactRow", "LedgerRow", "ConsentState", "build_states", "decide",
        "BatchEvaluator", "explain", "Explanation", "RuleVerdict",
    }
    assert all(hasattr(gating, name) for name in gating.__all__)
    assert [reason.value for reason in gating.Reason] == [
        "no_address", "invalid_address", "do_not_contact", "awaiting_sms_opt_in", "duplicate_address", "opted_out",
        "no_consent", "consent_revoked", "consent_expired", "review_overdue", "frequency_capped", "quiet_hours",
    ]
    assert issubclass(gating.PolicyError, ValueError)
    assert gating.SEND.decision == "send" and gating.Suppress(gating.Reason.OPTED_OUT).decision == "suppress"
    assert gating.Defer(1, gating.Reason.QUIET_HOURS).decision == "defer"


def test_decisions_are_frozen_and_slotted():
    for value in (gating.SEND, gating.Suppress(gating.Reason.OPTED_OUT), gating.Defer(1, gating.Reason.QUIET_HOURS)):
        assert not hasattr(value, "__dict__")
        with pytest.raises((AttributeError, TypeError)):  # FrozenInstanceError is an AttributeError
            value.reason = None
