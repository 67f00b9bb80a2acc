"""The words of the consent ledger (DESIGN.md section 1): actions, channels, parties.

Kept apart from ledger.py so that the row checks, which run in worker processes, can use
them without importing the database layer.
"""

from __future__ import annotations

__all__ = ["ACTIONS", "CHANNELS", "CONTACT_LEVEL_ACTIONS", "PARTIES", "SCOPED_ACTIONS"]

ACTIONS = ("grant", "revoke", "block", "unblock", "opt_out", "opt_in", "review")
CHANNELS = ("email", "sms", "voice", "letter", "social", "*")
PARTIES = ("first", "third", "*")
SCOPED_ACTIONS = ("grant", "revoke")  # the actions that take a class and a party
CONTACT_LEVEL_ACTIONS = ("opt_out", "opt_in", "review")  # the actions without a channel
