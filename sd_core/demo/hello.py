"""A tiny HTTP service for the demo: answers ``hello from NAME`` after a short random delay.

Run as ``python -m sd_core.demo.hello PORT NAME``; stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


def serve(port: int, name: str) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    body = f"hello from {name}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients pool their connections
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

        def do_GET(self) -> None:
            time.sleep(random.uniform(0.002, 0.008))  # some work, so in-flight counts vary
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def shutdown(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, name="hello-shutdown").start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.serve_forever(poll_interval=0.05)
    server.server_close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
