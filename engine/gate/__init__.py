"""The gating stage's read-only uses: check a whole audience, explain one contact.

Both ask `gating/` for every decision; nothing here interprets the ledger or the policy.
"""
