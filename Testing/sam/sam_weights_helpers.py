"""Helpers for the weights tests: tiny checkpoints, encoder outputs, a local HTTP server with
Range support. Imported as ``Testing.sam.sam_weights_helpers``."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from Testing import tiny_sam


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encoder_output(model, seed: int = 0) -> torch.Tensor:
    """Image-encoder output of ``model`` on a seeded random 1024x1024 RGB input (1, 3, 1024, 1024)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, 1024, 1024, generator=generator)
    with torch.no_grad():
        return model.image_encoder(x)


def same_weights(a: dict, b: dict) -> bool:
    """Whether two state dicts hold the same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def save_tiny(path: Path, seed: int = 0, **kwargs) -> Path:
    return tiny_sam.save_tiny_checkpoint(Path(path), seed=seed, **kwargs)


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files[path]``; honours ``Range: bytes=N-``; ``server.cut_after`` (a list)
    makes the next responses stop after that many body bytes and close the connection."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        server = self.server
        server.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        requested = self.headers.get("Range")
        if requested and server.honour_range:
            match = re.fullmatch(r"bytes=(\d+)-", requested.strip())
            start = int(match.group(1)) if match else 0
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = server.cut_after.pop(0) if server.cut_after else None
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, format, *args):  # keep test output quiet
        pass


class LocalServer:
    """An HTTP server on 127.0.0.1 (random port) in a daemon thread; a context manager."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
        self.httpd.files = {}
        self.httpd.requests = []
        self.httpd.cut_after = []
        self.httpd.honour_range = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def forbid_remote_connections(monkeypatch) -> None:
    """Make any name look-up or socket connection for a host other than the loopback fail the
    test (AssertionError, which urllib does not wrap), before anything leaves the machine."""
    original_connect = socket.socket.connect
    original_getaddrinfo = socket.getaddrinfo

    def guarded_connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in _LOOPBACK:
            raise AssertionError(f"test tried to reach {address!r}: tests never use the network")
        return original_connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in _LOOPBACK:
            raise AssertionError(f"test tried to look up {host!r}: tests never use the network")
        return original_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
