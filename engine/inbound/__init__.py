"""Inbound mail (`consentry inbound smtp`): unsubscribe mails, DSN bounces and ARF complaints
into the consent ledger and the delivery rows (docs/inbound-mail.md).

Modules: `addresses` (which recipients are ours), `reports` (parsing, no IO), `feedback`
(the writes), `handler` (the SMTP decisions), `server` (running it).
"""

from engine.inbound.addresses import AddressBook, InboundAddress, Role
from engine.inbound.handler import InboundHandler, Outcome
from engine.inbound.server import InboundServer, serve_inbound_until_stopped

__all__ = [
    "AddressBook",
    "InboundAddress",
    "InboundHandler",
    "InboundServer",
    "Outcome",
    "Role",
    "serve_inbound_until_stopped",
]
