"""Per-client limits kept in the API process: a request rate per API key (anonymous callers:
per client address), answered 429 with Retry-After, and the number of open live streams per
key and per address. Both are per process: with N replicas a client may get N times as much.

The rate limit is a GCRA (a token bucket that needs one timestamp per client and no timer). It
runs before anything touches the database, keyed on the presented key's hash, so a flood is
refused without a key lookup; /health, /ready and /metrics are never limited. Invented keys
would each get a budget of their own: every 401 is also charged to the caller's address, and
an address out of that budget gets 429 for any keyed request."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, OrderedDict

from fastapi import HTTPException, status
from starlette.responses import JSONResponse

from api.keys import hash_key
from api.metrics import CLIENT_CUTS
from core.logs import get

log = get("api.limits")

EXEMPT = frozenset(("/health", "/ready", "/metrics"))


def too_many(detail: str, retry_after_s: float) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail,
                         headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class RateLimiter:
    """`rate` requests/s steady and `burst` at once per client; remembers at most `max_clients`
    (the least recently seen is forgotten first), so memory stays bounded."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000):
        self.interval, self.tolerance, self.max_clients = 1 / rate, (burst - 1) / rate, max_clients
        self.tat: OrderedDict[str, float] = OrderedDict()  # theoretical arrival time per client

    def wait(self, who: str, now: float, count: bool = True) -> float:
        """0 when `who` may go now (and counts it, if `count`); otherwise the seconds until it may."""
        tat = max(self.tat.get(who, now), now)
        if tat - now > self.tolerance:
            return tat - now - self.tolerance
        if not count:
            return 0.0
        self.tat[who] = tat + self.interval
        self.tat.move_to_end(who)
        if len(self.tat) > self.max_clients:
            self.tat.popitem(last=False)
        return 0.0


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    if key := headers.get(b"x-api-key"):
        return key.decode("latin-1")
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def client_address(scope) -> str:
    return (scope.get("client") or ("unknown",))[0]


class RateLimitMiddleware:
    def __init__(self, app, rate: float, burst: int):
        self.app, self.rate, self.burst = app, rate, burst
        self.limiter = RateLimiter(rate, burst) if rate > 0 else None
        self.refused_keys = RateLimiter(rate, burst) if rate > 0 else None  # 401s per address

    async def __call__(self, scope, receive, send):
        if self.limiter is None or scope["type"] != "http" or scope["path"] in EXEMPT:
            return await self.app(scope, receive, send)
        key, address, now = presented_key(dict(scope["headers"])), f"addr:{client_address(scope)}", time.monotonic()
        wait = self.limiter.wait(f"key:{hash_key(key)}" if key else address, now)
        if key and not wait:
            wait = self.refused_keys.wait(address, now, count=False)
        if not wait:
            return await self.app(scope, receive, send if not key else self._charge_401(address, send))
        exc = too_many(f"rate limit: at most {self.rate:g} requests/s per API key (bursts of {self.burst}); "
                       "anonymous callers count per address", wait)
        await JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)(scope, receive, send)


    def _charge_401(self, address: str, send):
        async def watching(message):
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.refused_keys.wait(address, time.monotonic())
            await send(message)
        return watching


class StreamSlots:
    """Open live streams per API key and per client address."""

    def __init__(self, per_key: int, per_client: int):
        self.per_key, self.per_client = per_key, per_client
        self.open: Counter[str] = Counter()

    def take(self, key_id: int | None, address: str) -> tuple[str, ...]:
        names = (f"addr:{address}",) + ((f"key:{key_id}",) if key_id is not None else ())
        if self.open[names[0]] >= self.per_client:
            raise too_many(f"too many open streams from this address (at most {self.per_client})", 5)
        if key_id is not None and self.open[names[1]] >= self.per_key:
            raise too_many(f"too many open streams for this API key (at most {self.per_key})", 5)
        self.open.update(names)
        return names

    def give_back(self, names: tuple[str, ...]) -> None:
        self.open.subtract(names)
        for name in names:
            if self.open[name] <= 0:
                del self.open[name]


class BodyLimit:
    """413 as JSON for a request body over `max_bytes`: at once, without reading a byte, when its
    Content-Length says so; when the body comes in chunks, as soon as the running total does.
    408 for a body not all in within `timeout_s` of the app's first read of it (a client that
    sends a byte now and then would hold its connection and request task for good), with the
    connection closed. Reads after the body's last piece (Starlette's wait for a disconnect under
    a streamed answer) are not bounded."""

    def __init__(self, app, max_bytes: int, timeout_s: float):  # FINSENT_API_MAX_BODY_BYTES, _BODY_TIMEOUT_S
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.detail = f"the request body is larger than {max_bytes} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            return await JSONResponse({"detail": self.detail}, 413)(scope, receive, send)
        total, deadline, done = 0, None, False

        async def counted():
            nonlocal total, deadline, done
            if done:
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                CLIENT_CUTS.labels("body").inc()
                log.info("api.slow_client_cut", phase="body", path=scope.get("path"), received=total,
                         timeout_s=self.timeout_s)
                raise HTTPException(408, f"the request body did not arrive within {self.timeout_s:g}s",
                                    headers={"Connection": "close"}) from None
            done = message["type"] != "http.request" or not message.get("more_body", False)
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                raise HTTPException(413, self.detail)  # FastAPI answers it as JSON
            return message
        await self.app(scope, counted, send)


SEND_CHUNK = 64 * 1024  # bytes per write: about uvicorn's write buffer high-water mark


class SlowReader(Exception):
    """The client took no part of its answer within SendDeadline's timeout."""


def _is_slow_reader(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_slow_reader(e) for e in exc.exceptions)
    return isinstance(exc, SlowReader)


class SendDeadline:
    """Bounds what a client that stops reading can hold. uvicorn puts a whole body message into
    its write buffer at once and never times out a write: a client that asks for an events page
    (megabytes) and reads nothing kept all of it in the API's memory for as long as it kept the
    connection open, and an SSE client that reads nothing kept its stream and slot forever. Here
    bodies go out in SEND_CHUNK pieces, each waiting (uvicorn's flow control) for the client to
    take the previous ones, for at most `timeout_s`; then the answer is abandoned and the
    connection closed, so a stalled client holds a piece or two, and its stream ends."""

    def __init__(self, app, timeout_s: float, chunk: int = SEND_CHUNK):  # FINSENT_API_SEND_TIMEOUT_S
        self.app, self.chunk, self.timeout_s = app, chunk, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def bounded(message):
            try:
                async with asyncio.timeout(self.timeout_s):
                    await send(message)
            except TimeoutError:
                raise SlowReader from None

        async def paced(message):
            body = message.get("body", b"")
            if message["type"] != "http.response.body" or len(body) <= self.chunk:
                return await bounded(message)
            more, view = message.get("more_body", False), memoryview(body)
            for i in range(0, len(body), self.chunk):
                await bounded({"type": "http.response.body", "body": bytes(view[i:i + self.chunk]),
                               "more_body": more or i + self.chunk < len(body)})
        try:
            await self.app(scope, receive, paced)
        except Exception as exc:  # the server closes the connection: the answer was not completed
            if not _is_slow_reader(exc):
                raise
            CLIENT_CUTS.labels("read").inc()
            log.info("api.slow_reader_cut", path=scope.get("path"), timeout_s=self.timeout_s)
