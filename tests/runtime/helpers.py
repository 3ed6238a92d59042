"""Shared pieces for the runtime tests: engines with test settings, and a TCP listener
that records every connection it gets (to prove that a denied one never arrived)."""

import os
import shutil
import socket
import tempfile
import threading

import pytest

from runtime import Engine, PoolConfig

# Shared by every test run, so Deno's module cache (npm packages) stays warm.
WORK_DIR = os.path.join(tempfile.gettempdir(), "valtown-runtime-tests")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a uid per process, namespaces)")


def runtime_config(**changes):
    settings = {"pool_size": 2, "work_dir": WORK_DIR, "wait_timeout_seconds": 30}
    settings.update(changes)
    return PoolConfig(**settings)


def start_engine(**changes):
    engine = Engine(runtime_config(**changes))
    engine.start()
    return engine


async def assert_still_works(engine):
    """The pool is healthy: a trivial val still runs to the right answer."""
    result = await engine.evaluate("export default () => 1 + 1")
    assert (result.status, result.value) == ("success", 2), result


def can_unshare(*flags):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return os.system(f"unshare {' '.join(flags)} true >/dev/null 2>&1") == 0


class Listener:
    """A TCP server on this machine that counts the connections it accepts."""

    def __init__(self, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_until_stopped, daemon=True)
        self._thread.start()

    def _accept_until_stopped(self):
        while not self._stopped.is_set():
            try:
                connection, _ = self.socket.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nreached")
            except OSError:
                pass
            connection.close()

    def close(self):
        self._stopped.set()
        self._thread.join()
        self.socket.close()
