"""The Host header check: a guard against DNS rebinding.

Why: a web page on any site can make the user's browser send requests to ``127.0.0.1:8000`` under a
name the attacker controls (their DNS answer changes to 127.0.0.1 after the page has loaded); the
browser then treats our API as that site's own, and the page can read the answers. The one thing such a
request cannot hide is the attacker's name in ``Host``, so the server answers only to the names it was
told: by default the bound address and localhost.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD_BINDS = ("0.0.0.0", "::", "")


def default_allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """The Host names ``genrekit serve --host bind_host`` answers to: the bound address, localhost, and
    ``extra`` (``--allowed-hosts``). A wildcard bind (0.0.0.0, ::) is kept as such: it allows any IP
    literal (an address cannot be rebound; only a name can)."""
    names = [*LOCAL_NAMES, bind_host, *extra]
    out: list[str] = []
    for n in names:
        n = normalise(n)
        if n not in out:
            out.append(n)
    return out


def normalise(host: str) -> str:
    """A host name or pattern as compared: lower case, no brackets, no trailing dot."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    return h.rstrip(".") if h not in (".",) else h


def host_of(header: str) -> str:
    """The host part of a ``Host`` header (port and IPv6 brackets removed)."""
    h = header.strip()
    if h.startswith("["):
        return normalise(h[: h.find("]") + 1] if "]" in h else h)
    if h.count(":") == 1:
        h = h.partition(":")[0]
    return normalise(h)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_allowed(header: str, allowed: Iterable[str]) -> bool:
    """Whether a request's ``Host`` header names one of ``allowed``: exact names or addresses,
    ``*.example.com`` (that domain and its subdomains), ``*`` (anything), or a wildcard bind address
    (0.0.0.0, ::: any IP literal)."""
    host = host_of(header)
    if not host:
        return False
    for pattern in allowed:
        p = normalise(pattern)
        if p == "*" or p == host:
            return True
        if p.startswith("*.") and (host == p[2:] or host.endswith(p[1:])):
            return True
        if p in _WILDCARD_BINDS and _is_ip(host):
            return True
    return False


class AllowedHostsMiddleware:
    """ASGI middleware answering 421 (JSON ``{"error": ...}``) to a request whose Host is not allowed."""

    def __init__(self, app, *, allowed_hosts: Iterable[str]):
        self.app = app
        self.allowed = [normalise(h) for h in allowed_hosts]

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        header = ""
        for k, v in scope.get("headers", ()):
            if k == b"host":
                header = v.decode("latin-1")
                break
        if host_allowed(header, self.allowed):
            return await self.app(scope, receive, send)
        shown = host_of(header) or "(none)"
        body = json.dumps({"error": f"host {shown!r} is not allowed here: this server answers to "
                                    f"{', '.join(self.allowed)}; if {shown!r} is yours, start it with "
                                    f"--allowed-hosts {shown} (a guard against DNS rebinding)"}).encode()
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await send({"type": "http.response.start", "status": 421,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
