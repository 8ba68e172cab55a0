"""uvicorn's h11 protocol with a time limit on request headers.

uvicorn times out idle keep-alive connections but not a client sending its headers slowly (any byte
resets the keep-alive timer), nor a client that connects and says nothing, so such clients could hold
connections forever. Here a connection is closed when its request headers are not complete `seconds`
after it opened, or after the first byte of a request on a kept-alive connection (an idle kept-alive
connection is left to uvicorn's own keep-alive time-out).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self.conn.their_state is h11.IDLE:
                self._arm_header_timer()  # a new request starts on a kept-alive connection
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._disarm_header_timer()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(seconds, self._headers_overdue)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_overdue(self) -> None:
            self._header_timer = None
            # IDLE on their side: no complete request line and headers since the timer was armed.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutH11Protocol
