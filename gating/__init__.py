"""Consentry gating: the pure consent decision.

This package contains no IO: no database, no network, no files, no clock, no logging. It
takes plain data (a tenant policy mapping, loader rows as tuples, `now` as an integer of
microseconds since the epoch UTC) and returns plain immutable values. The shell (engine/)
loads a batch's rows in one go, calls in here, and acts on the decisions.

    policy = compile_policy(TenantPolicy.from_mapping(tenant_yaml), message)   # once per campaign
    evaluator = BatchEvaluator(policy, message)
    decisions = evaluator.evaluate(contact_rows, ledger_rows, recent_sends, now_us)  # per batch

`decide(state, message, policy, now_us)` gates one prepared `ConsentState`;
`explain(...)` lists every rule of DESIGN.md section 2 with its verdict and evidence.
"""

from gating.batch import BatchEvaluator
from gating.compiled import Cap, CompiledPolicy, compile_policy
from gating.decisions import SEND, Decision, DecisionKind, Defer, Send, Suppress
from gating.errors import PolicyError, UnknownClassError
from gating.explain import Explanation, RuleVerdict, explain
from gating.message import Message
from gating.policy import ClassMode, TenantPolicy
from gating.reasons import Reason
from gating.rules import RULES, decide
from gating.state import ConsentState, ContactRow, LedgerRow, LocalZones, build_states

__all__ = [
    "BatchEvaluator",
    "Cap",
    "ClassMode",
    "CompiledPolicy",
    "ConsentState",
    "ContactRow",
    "Decision",
    "DecisionKind",
    "Defer",
    "Explanation",
    "LedgerRow",
    "LocalZones",
    "Message",
    "PolicyError",
    "RULES",
    "Reason",
    "RuleVerdict",
    "SEND",
    "Send",
    "Suppress",
    "TenantPolicy",
    "UnknownClassError",
    "build_states",
    "compile_policy",
    "decide",
    "explain",
]
