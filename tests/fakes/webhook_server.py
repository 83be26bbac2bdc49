"""A webhook receiver on 127.0.0.1 that counts what arrives and injects faults on request.

Faults are queued per request: ``ok``, ``(status, headers, body)``, ``("slow", seconds)``,
``drop`` (close the connection without reading a response: nothing stored), and ``lose``
(store the delivery, then close without answering: the response is lost).
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from postscheduler.publishers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


class WebhookServer:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[dict[str, Any]] = []  # stored deliveries, in arrival order
        self.requests = 0
        self.bad_signatures = 0
        self.faults: collections.deque[Any] = collections.deque()
        self.latency = 0.0  # seconds every request takes, to widen the window for a crash
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with server.lock:
                    server.requests += 1
                    fault = server.faults.popleft() if server.faults else "ok"
                if server.latency:
                    time.sleep(server.latency)
                if fault == "drop":
                    self._abort()
                    return
                if not verify(
                    server.secret,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    body,
                    self.headers.get(SIGNATURE_HEADER, ""),
                ):
                    with server.lock:
                        server.bad_signatures += 1
                    self._answer(401, {}, b'{"error": "bad signature"}')
                    return
                if isinstance(fault, tuple) and fault[0] == "slow":
                    time.sleep(fault[1])
                elif isinstance(fault, tuple):
                    status, headers, answer = fault
                    self._answer(status, headers, answer)
                    return
                payload = json.loads(body)
                payload["_idempotency_key"] = self.headers.get("Idempotency-Key")
                with server.lock:
                    server.received.append(payload)
                    n = len(server.received)
                if fault == "lose":
                    self._abort()
                    return
                self._answer(
                    200, {}, json.dumps({"id": f"w{n}", "url": f"https://site.test/{n}"}).encode()
                )

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _abort(self) -> None:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.connection.close()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/hooks/posts"

    def keys(self) -> list[str]:
        with self.lock:
            return [r["_idempotency_key"] for r in self.received]

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
