"""The simulator over real HTTP on loopback: HTTP/1.1 keep-alive, one thread per connection."""
from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from carriers.simulator.carrier import SimulatedCarrier

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in one write; without this, Nagle + delayed ACK add ~40 ms per keep-alive call.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        carrier = self.server.carrier
        response = carrier.handle(self.command, self.path, headers, body)
        try:
            self._answer(response)
        finally:
            if not self.path.startswith("/_sim/"):
                carrier.call_done()

    def _answer(self, response) -> None:
        stop = self.server.stopping
        if response.delay and stop.wait(response.delay):
            return
        if response.hang:
            # A "timeout": keep the caller waiting, then answer late (most callers have given up).
            self.close_connection = True
            if stop.wait(response.hang):
                return
        reason = HTTPStatus(response.status).phrase
        head = [f"HTTP/1.1 {response.status} {reason}", "Content-Type: application/json",
                f"Content-Length: {len(response.body)}"]
        head += [f"{name}: {value}" for name, value in response.headers]
        if self.close_connection:
            head.append("Connection: close")
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = _serve

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        # Request lines carry no credentials, but one line per call would drown the console.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, carrier: SimulatedCarrier):
        self.carrier = carrier
        self.stopping = threading.Event()
        super().__init__(address, _Handler)


class SimulatorServer:
    """Serves a SimulatedCarrier on 127.0.0.1; port 0 picks a free one. Start in a thread or in the foreground."""

    def __init__(self, carrier: SimulatedCarrier, *, port: int = 0):
        self.carrier = carrier
        self._server = _Server((LOOPBACK, port), carrier)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> SimulatorServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"carrier-simulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._server.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
