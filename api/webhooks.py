"""Webhook targets and signatures.

A target URL is checked when a subscription is made and again before every send: https only
(unless FINSENT_WEBHOOK_ALLOW_HTTP), no credentials in the URL, and every address the host
resolves to must be public (loopback, private, link-local, cloud-metadata, multicast and
reserved addresses are refused unless FINSENT_WEBHOOK_ALLOW_PRIVATE). The host is resolved
once and the request goes to the checked address, with the original Host header and TLS
server name, so a DNS answer that changes between check and connect (rebinding) cannot
redirect it. Redirects are not followed; timeouts are bounded.

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
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

# Cloud metadata endpoints: link-local already covers 169.254.169.254; these are the others.
METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")}
DEFAULT_PORTS = {"https": 443, "http": 80}


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
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
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


def check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> None:
    ip = getattr(ip, "ipv4_mapped", None) or ip
    if ip.is_unspecified or ip.is_multicast:
        raise UnsafeTarget(f"address {ip} cannot be a webhook target")
    if allow_private:
        return
    if ip in METADATA:
        raise UnsafeTarget(f"address {ip} is a cloud metadata endpoint")
    if not ip.is_global:
        kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local
                else "private" if ip.is_private else "reserved")
        raise UnsafeTarget(f"address {ip} is {kind}")


async def resolve(url: str, *, allow_http: bool, allow_private: bool) -> Target:
    """Check `url` and resolve its host once; every answer must pass, the first is used."""
    scheme, host, port, path = parse(url, allow_http)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"cannot resolve {host}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeTarget(f"cannot resolve {host}")
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
