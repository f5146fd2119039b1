"""A loopback HTTP server (127.0.0.1 only) serving files for download tests:
whole files, wrong bytes, truncated bodies, 404s and redirects with
Hugging-Face-style headers. Never the internet."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    truncate_at: int | None = None  # send this many bytes of the body, then close (Content-Length says all)
    redirect: str | None = None
    gzip: bool = False  # send the body gzip-encoded (Content-Length counts the encoded bytes), asked or not


class LoopbackServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        self.request_headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.hits.append(self.path)
                server.request_headers.append({k.lower(): v for k, v in self.headers.items()})
                r = server.routes.get(self.path)
                if r is None:
                    body = b"not found"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if r.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", r.redirect)
                    self.send_header("Content-Length", "0")
                    for k, v in r.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    return
                body = gzip.compress(r.body) if r.gzip else r.body
                self.send_response(r.status)
                self.send_header("Content-Length", str(len(body)))
                if r.gzip:
                    self.send_header("Content-Encoding", "gzip")
                for k, v in r.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if r.truncate_at is not None:
                    self.wfile.write(body[: r.truncate_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, **kw: Any) -> str:
        self.routes[path] = Route(**kw)
        return self.url + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
