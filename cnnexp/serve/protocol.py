"""A deadline for the request line and headers. uvicorn times out idle keep-alive connections and the
app times out a stalled body (408), but a client that connects and then sends its headers slowly, or
not at all, would hold a connection open forever. This is uvicorn's httptools protocol with a timer
from the connection (and from each new request on it) until the headers are complete; when it fires,
the client gets 408 and the connection is closed. The hooks are httptools' parser callbacks."""

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

BODY = json.dumps({"error": "the request line and headers did not arrive in time; send the whole request at once"})
REQUEST_TIMEOUT = (f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                   f"content-length: {len(BODY)}\r\n\r\n{BODY}").encode()


class HeaderDeadlineProtocol(HttpToolsProtocol):
    timeout_s = 10.0  # set from read_timeout_s before serving (a class attribute: uvicorn makes the instances)
    deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.arm()

    def on_headers_complete(self) -> None:
        self.disarm()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self.disarm()
        super().connection_lost(exc)

    def arm(self) -> None:
        self.disarm()
        self.deadline = self.loop.call_later(self.timeout_s, self.too_slow)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def too_slow(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()
