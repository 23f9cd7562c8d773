"""The listening socket: bound by the supervisor, or passed to it by a process manager (socket
activation), so that the port outlives a supervisor restart."""

from __future__ import annotations

import errno
import os
import socket

LISTEN_FDS_START = 3  # sd_listen_fds(3): passed sockets start at file descriptor 3


def inherited_socket() -> socket.socket | None:
    """The listening socket a process manager passed by socket activation (``LISTEN_FDS`` and
    ``LISTEN_PID``, as systemd's ``.socket`` units and ``systemd-socket-activate`` do): the port
    stays open while the supervisor restarts, so connections wait instead of being refused.
    None when nothing was passed to this process."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # meant for this process, not for its workers
    if count < 1:
        return None
    return socket.socket(fileno=LISTEN_FDS_START)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from mlmedic.core.errors import ProjectError

        if exc.errno == errno.EADDRINUSE:
            raise ProjectError(f"{host}:{port} is already in use; pick --port") from exc
        raise ProjectError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(2048)
    return sock
