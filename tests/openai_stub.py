"""An OpenAI-compatible endpoint on 127.0.0.1 for tests (standard library HTTP server): each test supplies
the replies; the stub speaks the protocol (JSON in, JSON out, HTTP errors) and records every request."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass(frozen=True)
class StubRequest:
    path: str  # e.g. /v1/completions
    headers: Mapping[str, str]  # case-insensitive get (an http.client.HTTPMessage)
    body: dict


@dataclasses.dataclass
class StubEndpoint:
    url: str  # the base URL, ending in /v1
    requests: list[StubRequest]  # in the order they arrived


class StubError(Exception):
    """Raised by a reply function: the stub answers with this HTTP error instead."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def text_choices(texts: list[str]) -> list[dict]:
    """`/v1/completions` choices."""
    return [{"index": i, "text": text} for i, text in enumerate(texts)]


def chat_choices(texts: list[str]) -> list[dict]:
    """`/v1/chat/completions` choices: assistant messages."""
    return [{"index": i, "message": {"role": "assistant", "content": text}} for i, text in enumerate(texts)]


@contextlib.contextmanager
def openai_stub(reply: Callable[[StubRequest], dict]) -> Iterator[StubEndpoint]:
    """Serve `reply(request)` (the JSON reply, or raise `StubError`) until the block ends."""
    requests: list[StubRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = StubRequest(self.path, self.headers, body)
            requests.append(request)
            try:
                payload = json.dumps(reply(request)).encode()
            except StubError as exc:
                self.send_error(exc.status, exc.message)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield StubEndpoint(f"http://127.0.0.1:{server.server_address[1]}/v1", requests)
    finally:
        server.shutdown()
        server.server_close()
