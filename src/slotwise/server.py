"""How `slotwise serve` runs uvicorn: httptools and uvloop, `TCP_NODELAY` on every connection, and
with ``--workers N`` one listening socket per worker.

*TCP_NODELAY.* asyncio turns Nagle's algorithm off on an accepted socket only when the socket says
it is TCP (``proto == IPPROTO_TCP``), and an accepted socket copies ``proto`` from its listener.
uvicorn's ``--workers`` path binds the listener itself with ``proto`` left at 0 (uvicorn issue
#3149), so every small answer after the first on a keep-alive connection waited for the client's
delayed ACK: ~44 ms, ~360 req/s for a bare app at 16 connections. Here every listener is made with
``IPPROTO_TCP`` and ``TCP_NODELAY`` set on it (which Linux copies to accepted sockets), so asyncio
and uvloop alike answer without waiting.

*Spreading connections.* With one listening socket shared by all workers, whichever worker wakes
first accepts every connection waiting, so a client's burst of keep-alive connections often all
land on one worker (16/0 with 16 connections, the others idle). On Linux each worker therefore
binds its own socket into an ``SO_REUSEPORT`` group and the kernel spreads connections by their
addresses (9/7, 10/6 …). The parent binds one more socket into the group and never listens on it:
the port is checked and held before any worker starts, and a worker uvicorn restarts rejoins the
group. The price: the kernel spreads by address, not by how busy a worker is, and connections still
waiting in a dying worker's queue are reset rather than taken by another. Elsewhere (no balancing
``SO_REUSEPORT``) the workers share one socket.

A second ``slotwise serve --workers N`` on the same port would join the group and split the
traffic silently, so the parent also holds an abstract Unix socket named after the address: the
second server fails at once, as it would with a shared socket.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any, SupportsIndex

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

logger = logging.getLogger("uvicorn.error")
# Chosen by measurement (bench/http.py): with httptools the bare app answers ~50% more small requests
# per second than with h11; uvloop measured even with asyncio, and sets TCP_NODELAY by itself too.
HTTP = "httptools"
LOOP = "asyncio" if sys.platform == "win32" else "uvloop"
SPREAD_BY_KERNEL = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int, *, reuse_port: bool = False,
                     kind: type[socket.socket] = socket.socket) -> socket.socket:
    """A bound TCP socket that says it is TCP, with Nagle off; the server calls ``listen``."""
    sock = kind(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _OwnSocketPerWorker(socket.socket):
    """The parent's place in the ``SO_REUSEPORT`` group, bound but never listening (so never given
    a connection), handed to uvicorn's supervisor as the socket to serve. uvicorn pickles it into
    each worker it starts, restarts included; there it unpickles as a new socket of the worker's
    own, bound into the same group."""

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return (_worker_socket, (host, port))


def _worker_socket(host: str, port: int) -> socket.socket:
    return listening_socket(host, port, reuse_port=True)


def _one_server_per_address(host: str, port: int) -> socket.socket:
    guard = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        guard.bind(f"\0slotwise-serve {host}:{port}")  # abstract: gone when this process is
    except OSError:
        guard.close()
        raise OSError(f"another slotwise server already serves {host}:{port}") from None
    return guard


def serve(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """Serve the ASGI app at ``app`` ("module:attribute") until SIGINT or SIGTERM."""
    config = uvicorn.Config(app, host=host, port=port, workers=workers, http=HTTP, loop=LOOP, **options)
    by_kernel = workers > 1 and SPREAD_BY_KERNEL
    guard = None
    try:
        sock = listening_socket(host, port, reuse_port=by_kernel,
                                kind=_OwnSocketPerWorker if by_kernel else socket.socket)
        port = sock.getsockname()[1]
        if by_kernel:
            guard = _one_server_per_address(host, port)
    except OSError as error:
        logger.error("Cannot listen on %s:%d: %s", host, port, error)
        sys.exit(STARTUP_FAILURE)
    logger.info("Uvicorn running on http://%s:%d, %d worker(s)%s (Press CTRL+C to quit)", host, port, workers,
                " with a socket each" if by_kernel else "")
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server = uvicorn.Server(config)
            server.run(sockets=[sock])
            if not server.started:
                sys.exit(STARTUP_FAILURE)
    finally:
        sock.close()
        if guard is not None:
            guard.close()
