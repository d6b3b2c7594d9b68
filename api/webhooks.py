"""Webhook targets and signatures.

A target URL is checked when a subscription is made and again before every send: https only
(unless FINSENT_WEBHOOK_ALLOW_HTTP), no credentials in the URL, and every address the host
resolves to must be public (loopback, private, link-local, cloud-metadata, multicast and
reserved addresses are refused unless FINSENT_WEBHOOK_ALLOW_PRIVATE), and so must every IPv4
address an IPv6 one embeds (IPv4-mapped and -compatible, SIIT, NAT64, 6to4, Teredo). A refusal
says only that the target is not allowed: naming the address, or whether the host resolved at
all, would make the API a DNS oracle for the caller's view of private names. The host is resolved
once and the request goes to the checked address, with the original Host header and TLS
server name, so a DNS answer that changes between check and connect (rebinding) cannot
redirect it. Redirects are not followed; timeouts are bounded. A URL must be printable ASCII
(an international host in its xn-- form, anything else percent-encoded): the HTTP client cannot
send another, and a stored URL it cannot send must not reach the deliverer. The host lookup waits
at most RESOLVE_TIMEOUT_S, on threads of its own, so a name server that never answers neither
holds a request nor takes the threads the rest of the API runs blocking work on.

Signature (how a receiver verifies it):

    import hashlib, hmac, time
    def verify(secret: str, headers, body: bytes, tolerance_s: int = 300) -> bool:
        ts = headers["X-Finsent-Timestamp"]
        expected = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return (abs(time.time() - int(ts)) <= tolerance_s
                and hmac.compare_digest(headers["X-Finsent-Signature"], "sha256=" + expected))

`X-Finsent-Delivery` is the same on every retry of one delivery: receivers deduplicate on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

# Cloud metadata endpoints: link-local already covers 169.254.169.254; these are the others.
METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")}
DEFAULT_PORTS = {"https": 443, "http": 80}
NOT_ALLOWED = "the target is not allowed (its host must resolve, and only to public addresses)"
# IPv6 prefixes whose last 32 bits are an IPv4 address: IPv4-compatible, SIIT, NAT64 (RFC 6052)
LOW32 = [ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")]
NAT64 = LOW32[2]  # reserved as a block, yet it reaches the (public) IPv4 address it carries
RESOLVE_TIMEOUT_S = 5.0  # one host lookup, at most (then the target is not allowed)
# getaddrinfo blocks a thread until the resolver gives up (tens of seconds for a name server that
# never answers): these lookups get threads of their own, not the event loop's default executor
# (asyncio.to_thread: scoring), so slow names cannot starve the rest of the API
_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")


class UnsafeTarget(ValueError):
    """The URL may not be called; the message says why (shown to the subscriber)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    ip: str

    @property
    def connect_url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Finsent-Timestamp": ts, "X-Finsent-Signature": f"sha256={digest}"}


def parse(url: str, allow_http: bool) -> tuple[str, str, int, str]:
    if not url.isascii() or not url.isprintable() or " " in url:
        raise UnsafeTarget("the URL must be printable ASCII without spaces (percent-encode other characters; "
                           "an international host name in its xn-- form)")
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)  # what the deliverer will send must be a URL the HTTP client accepts
    except (ValueError, httpx.InvalidURL) as exc:
        raise UnsafeTarget(f"not a valid URL: {exc}") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeTarget(f"the URL scheme must be {' or '.join(allowed)}")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("credentials in the URL are not allowed")
    if not parts.hostname:
        raise UnsafeTarget("the URL has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], path


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, SIIT, NAT64, 6to4, Teredo)."""
    if ip.version == 4:
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in net for net in LOW32):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


# IANA's special-purpose registries, the blocks not globally reachable, written out: the
# standard library's list depends on the Python release (3.11's misses 192.0.0.8-255 and
# 100:0:0:1::/64, for instance), and a gap there is a way in. Either list refusing is enough.
NOT_GLOBAL = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/127", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/63", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8")]


def is_public(ip) -> bool:
    return (ip.is_global and not (ip.is_reserved or ip.is_multicast or ip in METADATA)
            and not any(ip in net for net in NOT_GLOBAL if net.version == ip.version))


def check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> None:
    inner = embedded_ipv4(ip)
    if any(a.is_unspecified or a.is_multicast for a in (ip, *inner)):
        raise UnsafeTarget(NOT_ALLOWED)
    if allow_private:
        return
    if not all(map(is_public, inner)) or not (ip in NAT64 or is_public(ip)):
        raise UnsafeTarget(NOT_ALLOWED)


async def resolve(url: str, *, allow_http: bool, allow_private: bool) -> Target:
    """Check `url` and resolve its host once; every answer must pass, the first is used."""
    scheme, host, port, path = parse(url, allow_http)
    try:
        lookup = asyncio.get_running_loop().run_in_executor(_LOOKUPS, socket.getaddrinfo, host, port, 0,
                                                            socket.SOCK_STREAM)
        infos = await asyncio.wait_for(lookup, RESOLVE_TIMEOUT_S)
    except (socket.gaierror, UnicodeError, OSError, TimeoutError):
        raise UnsafeTarget(NOT_ALLOWED) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeTarget(NOT_ALLOWED)
    for ip in addresses:
        check_address(ip, allow_private)
    return Target(scheme, host, port, path, str(addresses[0]))


def client(timeout_s: float) -> httpx.AsyncClient:
    # trust_env=False: no proxy from the environment may carry the request elsewhere
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False,
                             limits=httpx.Limits(max_connections=50, max_keepalive_connections=0))


async def post(http: httpx.AsyncClient, target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST to the checked address; the status code (the body is not read)."""
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    headers = {**headers, "Host": target.host_header, "Content-Type": "application/json",
               "User-Agent": "finsent-webhook/1"}
    async with http.stream("POST", target.connect_url, content=body, headers=headers, extensions=extensions) as r:
        return r.status_code
