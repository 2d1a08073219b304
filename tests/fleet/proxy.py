"""A TCP proxy the test controls: one node's way to the database, cut and restored at will.

    proxy = Proxy("127.0.0.1", cluster.port).start()
    url = proxy.url_of(cluster.url())   # the node connects through the proxy
    proxy.cut("reset")       # every open connection reset, new ones reset at once
    proxy.cut("blackhole")   # packets vanish both ways: what a network partition looks like
    proxy.restore()          # new connections work again (old ones stay broken)

``reset`` is a database that went away: the client learns it at once. ``blackhole`` is a
partition: nothing answers and nothing says so, so only the client's own timeouts (TCP
keepalives, ``tcp_user_timeout``, its query deadlines) can tell. On loopback the proxy's
kernel would still acknowledge every packet, keepalive probes included, so as root a
blackhole is made by the kernel: an nftables table of the proxy's own drops every packet
to and from its port (new connections' SYNs too). Without root (or without ``nft``) it
falls back to the proxy holding every byte, which hangs queries but cannot fool TCP
keepalives; :attr:`Proxy.kernel_blackhole` says which one a test got.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import threading
from urllib.parse import urlsplit, urlunsplit

MODES = ("open", "reset", "blackhole")


def _reset(sock: socket.socket) -> None:
    """Close with an RST (linger 0), not a FIN: the peer sees ECONNRESET."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One client connection and its connection to the target, pumped by one thread."""

    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True,
                                       name=f"proxy-pair-{client.fileno()}")

    def _pump(self) -> None:
        other = {self.client: self.upstream, self.upstream: self.client}
        with selectors.DefaultSelector() as sel:
            try:
                sel.register(self.client, selectors.EVENT_READ)
                sel.register(self.upstream, selectors.EVENT_READ)
            except (ValueError, OSError):  # closed (cut, restored) before it began
                self.close()
                return
            while not self.closed.is_set():
                if self.proxy.mode == "blackhole":  # hold every byte where it is
                    self.closed.wait(0.05)
                    continue
                for key, _ in sel.select(timeout=0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                        if data and self.proxy.mode == "open":
                            other[sock].sendall(data)
                            continue
                    except OSError:
                        pass
                    if self.proxy.mode == "blackhole":
                        break
                    self.close()
                    return

    def close(self) -> None:
        self.closed.set()
        _reset(self.client)
        _reset(self.upstream)


class Proxy:
    """Listens on 127.0.0.1 (a free port) and forwards each connection to ``target``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "open"
        self.kernel_blackhole = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name=f"proxy-{self.port}")
        self._table = f"folderseal_proxy_{self.port}"

    def start(self) -> Proxy:
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self._thread.start()
        return self

    def url_of(self, url: str) -> str:
        """``url`` (a postgresql:// URL) with its host and port those of this proxy."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def open_connections(self) -> int:
        with self._lock:
            self._pairs = [p for p in self._pairs if not p.closed.is_set()]
            return len(self._pairs)

    # -- the switch -------------------------------------------------------------------

    def cut(self, how: str = "reset", kernel: bool = True) -> None:
        """Cut the way through: ``reset`` resets every open connection and each new one;
        ``blackhole`` answers nothing, on open connections and new ones alike (by the
        kernel's drop when ``kernel`` and root allow, else by the proxy holding bytes)."""
        if how not in ("reset", "blackhole"):
            raise ValueError(f"cut how? {how!r}: reset or blackhole")
        self.mode = how
        if how == "blackhole":
            self.kernel_blackhole = kernel and self._drop_in_kernel()
            return
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def restore(self) -> None:
        """New connections go through again. Connections open across a blackhole are
        reset now (a partition that heals leaves them to their own timeouts; the node
        must have given up on them already, and one left hanging would hide that)."""
        if self.kernel_blackhole:
            self._nft("delete", "table", "inet", self._table)
            self.kernel_blackhole = False
        if self.mode == "blackhole":
            with self._lock:
                pairs, self._pairs = self._pairs, []
            for pair in pairs:
                pair.close()
        self.mode = "open"

    def stop(self) -> None:
        """Stop listening and reset every connection (the kernel rule gone too)."""
        if self.kernel_blackhole:
            self._nft("delete", "table", "inet", self._table)
            self.kernel_blackhole = False
        self._stopped.set()
        self._thread.join(5)
        self._listener.close()
        self.mode = "reset"
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inside -----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self.mode == "reset":
                _reset(client)
                continue
            if self.mode == "blackhole":  # accepted (the kernel did already), never served
                pair = _Pair(self, client, socket.socket())
            else:
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _reset(client)
                    continue
                upstream.settimeout(None)
                pair = _Pair(self, client, upstream)
            with self._lock:
                self._pairs.append(pair)
            pair.thread.start()

    def _drop_in_kernel(self) -> bool:
        """A table of this proxy's own that drops every packet to or from its port."""
        if os.geteuid() != 0 or shutil.which("nft") is None:
            return False
        rules = (f"table inet {self._table} {{\n"
                 "  chain out { type filter hook output priority -10; policy accept;\n"
                 f"    tcp dport {self.port} drop\n    tcp sport {self.port} drop\n  }}\n"
                 "}\n")
        done = subprocess.run(["nft", "-f", "-"], input=rules, capture_output=True, text=True,
                              check=False, timeout=10)
        return done.returncode == 0

    def _nft(self, *args: str) -> None:
        subprocess.run(["nft", *args], capture_output=True, check=False, timeout=10)
