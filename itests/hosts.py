"""Two trader hosts on one machine, and a wire that records who sent what to the exchange.

``TwoHosts`` puts each trader of a run in its own network namespace, on its own
address of a private bridge, where the machine allows it (root and the ``ip``
tool: it tries, and cleans up whatever it made); else both run on loopback and
the report says so. Across namespaces the shared services are reached the way a
second host reaches them: through the bridge's address, where ``Wire`` forwards
to the machine's Redis, PostgreSQL and simulator.

``Wire`` is a TCP forwarder. In front of the simulator it also reads the HTTP
requests going through (method, path, time) and names the process that opened
each connection, from the kernel's socket table of each candidate process, so a
verdict can say which trader sent a request without trusting the trader.
WebSocket upgrades are passed through as raw bytes after the upgrade request.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NETNS = "netns"
LOOPBACK = "loopback"
MAX_HEADER_BYTES = 64 * 1024


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class TwoHosts:
    """Hosts ``a`` and ``b`` for a run: ``prefix(name)`` starts a command there, ``gateway`` reaches the services."""

    run_id: str
    mode: str = LOOPBACK
    why: str = ""
    gateway: str = "127.0.0.1"
    addresses: dict[str, str] = field(default_factory=dict)
    _made: list[tuple[str, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = hashlib.sha256(self.run_id.encode()).hexdigest()[:6]
        self.namespaces = {"a": f"sc{tag}a", "b": f"sc{tag}b"}
        self.bridge = f"scbr{tag}"
        self.addresses = {"a": "127.0.0.1", "b": "127.0.0.1"}

    def open(self, *, namespaces: bool = True) -> TwoHosts:
        """Make the namespaces and the bridge, or fall back to loopback saying why."""
        if not namespaces:
            self.why = "loopback asked for"
            return self
        if os.geteuid() != 0 or shutil.which("ip") is None:
            self.why = "network namespaces need root and the ip tool"
            return self
        try:
            self._make(self._free_subnet())
        except (subprocess.SubprocessError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            self.why = f"ip netns failed: {exc} {detail.decode(errors='replace').strip()}".strip()
            self.close()
            return self
        self.mode, self.why = NETNS, "two network namespaces on a private bridge"
        return self

    def _free_subnet(self) -> str:
        used = subprocess.run(["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True, text=True,
                              timeout=10).stdout
        start = int(hashlib.sha256(self.run_id.encode()).hexdigest()[:4], 16) % 200
        for step in range(200):
            subnet = f"10.213.{(start + step) % 200 + 20}"
            if f" {subnet}." not in used:
                return subnet
        raise OSError("no free 10.213.x.0/24 subnet")

    def _make(self, subnet: str) -> None:
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        self._made.append(("link", "del", self.bridge))
        _ip("addr", "add", f"{subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        self.gateway = f"{subnet}.1"
        for index, (host, ns) in enumerate(sorted(self.namespaces.items()), start=2):
            _ip("netns", "add", ns)
            self._made.append(("netns", "del", ns))
            outside, inside = f"{ns}h", f"{ns}n"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._made.append(("link", "del", outside))
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", ns, "addr", "add", f"{subnet}.{index}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.addresses[host] = f"{subnet}.{index}"

    def prefix(self, host: str) -> tuple[str, ...]:
        """Return the argv prefix that starts a command on ``host``."""
        return ("ip", "netns", "exec", self.namespaces[host]) if self.mode == NETNS else ()

    def close(self) -> None:
        """Remove what ``open`` made, newest first; safe to call twice."""
        while self._made:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                _ip(*self._made.pop())

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "why": self.why, "gateway": self.gateway, "addresses": dict(self.addresses)}


# -- the wire -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request seen on the wire: when, from which peer and process, what."""

    at_ms: int
    peer: str
    owner: str
    method: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"atMs": self.at_ms, "peer": self.peer, "owner": self.owner, "method": self.method,
                "path": self.path}


def _socket_inodes(pid: int, local_port: int, remote_port: int) -> set[str]:
    """Return the inodes of ``pid``'s network namespace's TCP sockets from ``local_port`` to ``remote_port``."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and int(cols[1].rsplit(":", 1)[1], 16) == local_port \
                    and int(cols[2].rsplit(":", 1)[1], 16) == remote_port:
                found.add(cols[9])
    return found


def socket_owner(candidates: dict[int, str], peer_port: int, listen_port: int) -> str:
    """Name the candidate process holding the client end of a connection (Linux /proc), or ``"?"``."""
    for pid, name in candidates.items():
        inodes = _socket_inodes(pid, peer_port, listen_port)
        if not inodes:
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]") in inodes:
                        return name
    return "?"


class Wire:
    """Forward ``host:port`` to ``target``; with ``http``, record each request and the process that sent it."""

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1", http: bool = False,
                 candidates: Callable[[], dict[int, str]] = dict) -> None:
        self.target, self.http, self.candidates = target, http, candidates
        self._server = socket.create_server((host, 0))
        self.host, self.port = host, self._server.getsockname()[1]
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name=f"wire-{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def seen(self, *, owner: str | None = None, since_ms: int = 0) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.at_ms >= since_ms and (owner is None or r.owner == owner)]

    def close(self) -> None:
        self._closed = True
        for sock in [self._server, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, peer = self._server.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                if self._closed:
                    return
                continue
            upstream.settimeout(None)
            owner = socket_owner(self.candidates(), peer[1], self.port) if self.http else ""
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            forward = self._requests if self.http else self._pipe
            args = (client, upstream, f"{peer[0]}:{peer[1]}", owner) if self.http else (client, upstream)
            threading.Thread(target=forward, args=args, daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, buffered: bytes = b"") -> None:
        try:
            if buffered:
                sink.sendall(buffered)
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _requests(self, client: socket.socket, upstream: socket.socket, peer: str, owner: str) -> None:
        """Read requests one by one (headers, then a Content-Length body), record and forward each."""
        buffered = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = client.recv(65536)
                    if not chunk or len(buffered) > MAX_HEADER_BYTES:
                        raise OSError("connection closed")
                    buffered += chunk
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = ([*lines[0].split(" "), "", ""])[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
                with self._lock:
                    self.requests.append(Request(int(time.time() * 1000), peer, owner, method, path))
                upstream.sendall(head + b"\r\n\r\n")
                if headers.get("upgrade", "").lower() == "websocket":
                    self._pipe(client, upstream, buffered)
                    return
                length = int(headers.get("content-length", "0") or 0)
                while len(buffered) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        raise OSError("connection closed")
                    buffered += chunk
                upstream.sendall(buffered[:length])
                buffered = buffered[length:]
        except (OSError, ValueError):
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
