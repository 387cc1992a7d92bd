"""Fixtures of the serve tests: tiny checkpoints and clips, a loopback webhook receiver."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from support.inference import encode, make_checkpoint, moving_square


@pytest.fixture(scope="session")
def fighting_checkpoint(tmp_path_factory) -> Path:
    """rsanet_tiny scoring 'fighting' ~0.99 on any clip."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "fighting.pt", favour=0)


@pytest.fixture(scope="session")
def square_clip(tmp_path_factory) -> Path:
    """2 s at 25 fps (50 frames of 64 x 48), mp4."""
    return encode(tmp_path_factory.mktemp("clips") / "square.mp4", moving_square(50))


@pytest.fixture
def image() -> np.ndarray:
    return moving_square(1)[0]


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with server.lock:
            number = len(server.requests)
            server.requests.append(SimpleNamespace(headers=dict(self.headers), body=body))
        status = server.statuses[min(number, len(server.statuses) - 1)]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    """``start(statuses=(204,))`` -> a loopback webhook receiver (``.url``, ``.requests``)."""
    servers = []

    def start(statuses=(204,)) -> SimpleNamespace:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
        server.statuses, server.requests, server.lock = list(statuses), [], threading.Lock()
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return SimpleNamespace(
            url=f"http://127.0.0.1:{server.server_address[1]}/hook", requests=server.requests
        )

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
