"""How the API is served: uvicorn with its C parser (httptools), and a deadline on what a client
sends. uvicorn times out a connection only between requests (keep-alive): one that connects and
sends nothing, or sends its request head a byte at a time (slowloris), stays open for good, and
enough of them use up the process's file descriptors so that no one else gets in. Here a request
head (request line and headers) must be complete within FINSENT_API_HEADER_TIMEOUT_S of the
connection opening or of the request's first byte; the body's deadline is BodyDeadline's (an ASGI
middleware, api.limits). Both answer 408 and close the connection.

    config = uvicorn_config(create_app(settings), settings, host=..., port=...)
    uvicorn.Server(config).run()
"""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.metrics import CLIENT_CUTS
from core.logs import get
from core.settings import Settings

log = get("api.server")

_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s")


def head_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a deadline on each request head."""

    class HeadDeadlineProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:  # a request's first byte (also of the next one on a kept-alive connection)
            super().on_message_begin()
            if self._head_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._head_timer = self.loop.call_later(timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            CLIENT_CUTS.labels("header").inc()
            log.info("api.slow_client_cut", phase="header", timeout_s=timeout_s,
                     client=self.client[0] if self.client else None)
            if self.cycle is None or self.cycle.response_complete:  # (not in the middle of an answer)
                body = b'{"detail":"the request head did not arrive within %gs"}' % timeout_s
                self.transport.write(_408 % (len(body), body))
            self.transport.close()

    return HeadDeadlineProtocol


def uvicorn_config(app, settings: Settings, **kw) -> uvicorn.Config:
    """The one uvicorn configuration of the API (the CLI's and the tests')."""
    return uvicorn.Config(app, http=head_deadline_protocol(settings.api_header_timeout_s), proxy_headers=False, **kw)
