"""Slowing down password guessing on the desk's sign-in form.

After `ACCOUNT_LIMIT` failures within `WINDOW_US` for one account (tenant and user name, or
a key's first characters), or `ADDRESS_LIMIT` from one address (higher: a whole showroom
may sit behind one address), further attempts are refused until the oldest failure leaves
the window. Kept in the process: one `serve` is one throttle. Several `serve`
processes each count on their own, which multiplies the attempts by the process count but
still bounds them; scrypt (engine/desk/passwords.py) makes each attempt slow as well.
"""

from __future__ import annotations

from collections import deque

from aiohttp import web

__all__ = ["ACCOUNT_LIMIT", "ADDRESS_LIMIT", "THROTTLE", "WINDOW_US", "Throttle"]

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 50
WINDOW_US = 15 * 60 * 1_000_000
# Bounded memory under a flood of distinct names: the oldest entries are forgotten first.
_MAX_KEYS = 100_000


class Throttle:
    def __init__(self) -> None:
        self._failures: dict[str, deque[int]] = {}

    def _recent(self, key: str, now: int) -> deque[int]:
        stamps = self._failures.get(key)
        if stamps is None:
            return deque()
        while stamps and stamps[0] <= now - WINDOW_US:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
        return stamps

    def blocked(self, account: str, address: str, now: int) -> bool:
        return (len(self._recent(f"a:{account}", now)) >= ACCOUNT_LIMIT
                or len(self._recent(f"r:{address}", now)) >= ADDRESS_LIMIT)

    def failed(self, account: str, address: str, now: int) -> None:
        for key in (f"a:{account}", f"r:{address}"):
            if key not in self._failures and len(self._failures) >= _MAX_KEYS:
                del self._failures[next(iter(self._failures))]
            self._failures.setdefault(key, deque()).append(now)


# One per application (engine/desk/__init__.py installs it), so two apps in one process
# (tests) do not share their counts.
THROTTLE = web.AppKey("consentry_desk_throttle", Throttle)
