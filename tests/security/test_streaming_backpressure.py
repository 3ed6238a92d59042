"""A visitor who stops reading holds a streaming HTTP val back, under daphne as the
platform runs it: the web process keeps no more of the response than a window, however
much the val could produce, and hands over every byte once the visitor reads again.

daphne's send() returns as soon as Twisted has buffered the bytes, so a window that only
counted what send() had taken never closed: one request could make the web process
hold a val's whole stream (hundreds of MB in seconds)."""

import json
import os
import socket
import time

import pytest

from tests.factory import make_user, make_val
from tests.live import LiveServer, quiet_server_before_flush, rss_bytes  # noqa: F401 (an autouse fixture)
from valtown.backpressure import SendWaitsForTheSocket

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK_BYTES = 64 * 1024
CHUNKS = 1024  # 64 MiB in all: far more than any buffer on the way may hold
RESPONSE_WINDOW_BYTES = 256 * 1024  # PoolConfig.http_response_window_bytes
# Allowed growth of the web process's memory while a visitor holds a stream: the window,
# what Twisted buffers before it pauses, and room for the allocator's own ups and downs.
MEMORY_ALLOWANCE_BYTES = 4 * 1024 * 1024

# Enqueues 64 KiB chunks as fast as the stream is read: chunk i is the line "i" (zero
# padded to 15 digits) 4096 times, so the visitor can tell whether anything went
# missing or out of order. GET /produced says how much the process's streams have
# enqueued, and how many were cancelled.
STREAMING_VAL = f"""\
let produced = 0;
let cancelled = 0;
const encoder = new TextEncoder();

export default (req: Request) => {{
  if (new URL(req.url).pathname === "/produced") return Response.json({{ produced, cancelled }});
  let i = 0;
  const body = new ReadableStream({{
    pull(controller) {{
      controller.enqueue(encoder.encode((String(i).padStart(15, "0") + "\\n").repeat({CHUNK_BYTES // 16})));
      produced += {CHUNK_BYTES};
      if (++i === {CHUNKS}) controller.close();
    }},
    cancel() {{
      cancelled += 1;
    }},
  }});
  return new Response(body, {{ headers: {{ "content-type": "text/plain" }} }});
}};
"""


def chunk(i):
    return (f"{i:015d}\n".encode()) * (CHUNK_BYTES // 16)


@pytest.fixture(scope="module", params=["daphne", "runserver"])
def server(request, django_db_setup, django_db_blocker):
    # Both ways the platform runs daphne: `python -m daphne` (the Procfile) and
    # `manage.py runserver` (`make run`), which wraps the application in its own.
    # The deadline is long enough never to end a held stream during a test.
    live = LiveServer({"EVALUATION_TIMEOUT_SECONDS": "120"}, runserver=request.param == "runserver")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def impatient_server(django_db_setup, django_db_blocker):
    live = LiveServer({"EVALUATION_TIMEOUT_SECONDS": "2"})
    yield live
    live.stop()


@pytest.fixture
def streaming_val():
    make_val(make_user("alice"), name="stream", type="http", code=STREAMING_VAL)
    return "alice-stream"


class Visitor:
    """A raw HTTP/1.1 client that reads the response only when told to."""

    def __init__(self, server, label, path="/"):
        self.sock = socket.socket()
        # A small receive buffer, so that the kernel holds little of what the visitor
        # hasn't read: what the server then holds back is the server's doing.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.settimeout(60)  # a server that stops sending fails the test, not hangs it
        self.sock.connect(("127.0.0.1", server.port))
        host = f"{label}.web.localhost:{server.port}"
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        self.received = bytearray()

    @property
    def receive_buffer_bytes(self):
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def read_at_least(self, count):
        while len(self.received) < count:
            data = self.sock.recv(count - len(self.received))
            if not data:
                break
            self.received += data

    def read_the_head_and_a_little(self):
        while b"\r\n\r\n" not in self.received:
            data = self.sock.recv(4096)
            assert data, "the server closed the connection before the response's head"
            self.received += data
        self.read_at_least(self.received.index(b"\r\n\r\n") + 4 + CHUNK_BYTES)

    def read_to_the_end(self):
        while data := self.sock.recv(1024 * 1024):
            self.received += data
        self.sock.close()

    def leave(self):
        self.sock.close()

    def head_and_body(self):
        head, _, body = bytes(self.received).partition(b"\r\n\r\n")
        head = head.decode("latin-1")
        return head, dechunked(body) if "transfer-encoding: chunked" in head.lower() else body


def dechunked(data):
    """A body in HTTP/1.1 chunked transfer coding, decoded; fails on a truncated one."""
    body, at = bytearray(), 0
    while True:
        line_end = data.index(b"\r\n", at)
        size = int(data[at:line_end].split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            return bytes(body)
        assert len(data) >= at + size + 2, "the body was cut short"
        body += data[at : at + size]
        at += size + 2


def produced(server, label):
    """What the val's process says its streams have enqueued, and how many were cancelled."""
    visitor = Visitor(server, label, "/produced")
    visitor.read_to_the_end()
    head, body = visitor.head_and_body()
    assert head.startswith("HTTP/1.1 200"), head
    return json.loads(body)


def wait_for(condition, what):
    """Polls condition() until it is true; a generous limit fails a test that would hang."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def wait_until_production_stops(server, label, ceiling):
    """The val's count of bytes enqueued once it has stopped growing, or as soon as it
    passes ceiling (a stream that nothing holds back runs past it at once). Stopped
    means unchanged over ten polls in a row: a stream still flowing, at any pace the
    machine allows, shows growth between polls, as each poll is itself a request to
    the val's process that queues behind the stream's work there."""
    counts = [produced(server, label)["produced"]]
    while len(counts) < 10 or len(set(counts[-10:])) > 1:
        counts.append(produced(server, label)["produced"])
        if counts[-1] > ceiling:
            break
        time.sleep(0.02)
    return counts[-1]


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def what_may_be_in_flight(visitor):
    """Bytes the val may have produced for a visitor who stopped reading: the response
    window, the chunk the stream's queue holds and the one being read, what the
    visitor's kernel may hold, and the server's socket's send buffer at its largest
    (Linux grows it up to tcp_wmem's maximum)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        send_buffer_max = int(f.read().split()[2])
    return RESPONSE_WINDOW_BYTES + 2 * CHUNK_BYTES + visitor.receive_buffer_bytes + send_buffer_max


def test_a_visitor_who_stops_reading_holds_the_stream_back(server, streaming_val):
    produced(server, streaming_val)  # the val's process is warm, the lookup made
    baseline = rss_bytes(server.pid)
    visitor = Visitor(server, streaming_val)
    visitor.read_the_head_and_a_little()
    assert visitor.received.startswith(b"HTTP/1.1 200")

    bound = what_may_be_in_flight(visitor)
    held_at = wait_until_production_stops(server, streaming_val, ceiling=bound)
    growth = rss_bytes(server.pid) - baseline
    assert held_at <= bound, f"the val produced {held_at:,} bytes for a visitor who read {len(visitor.received):,}"
    assert growth < MEMORY_ALLOWANCE_BYTES, f"the web process grew by {growth:,} bytes"

    visitor.read_to_the_end()
    head, body = visitor.head_and_body()
    assert "transfer-encoding: chunked" in head.lower()
    assert len(body) == CHUNKS * CHUNK_BYTES
    assert body == b"".join(chunk(i) for i in range(CHUNKS)), "bytes were lost or came out of order"
    assert produced(server, streaming_val) == {"produced": CHUNKS * CHUNK_BYTES, "cancelled": 0}


def test_a_visitor_who_leaves_mid_stream_frees_what_it_held(server, streaming_val):
    produced(server, streaming_val)
    baseline, files = rss_bytes(server.pid), open_files(server.pid)
    visitor = Visitor(server, streaming_val)
    visitor.read_the_head_and_a_little()
    bound = what_may_be_in_flight(visitor)
    assert wait_until_production_stops(server, streaming_val, ceiling=bound) <= bound

    visitor.leave()
    wait_for(lambda: produced(server, streaming_val)["cancelled"] == 1, "the val's stream was cancelled")
    wait_for(lambda: open_files(server.pid) <= files, "the server closed the visitor's connection")
    assert produced(server, streaming_val)["produced"] <= bound
    growth = rss_bytes(server.pid) - baseline
    assert growth < MEMORY_ALLOWANCE_BYTES, f"the web process grew by {growth:,} bytes"
    # The next visitor gets the whole stream, as before.
    again = Visitor(server, streaming_val)
    again.read_to_the_end()
    assert len(again.head_and_body()[1]) == CHUNKS * CHUNK_BYTES


def test_a_visitor_who_stops_reading_is_cut_off_at_the_deadline(impatient_server, streaming_val):
    # A send() that waits for the visitor must not hold the request past its deadline.
    visitor = Visitor(impatient_server, streaming_val)
    visitor.read_the_head_and_a_little()
    wait_for(lambda: produced(impatient_server, streaming_val)["cancelled"] == 1, "the deadline cancelled the stream")

    visitor.read_to_the_end()
    body = visitor.head_and_body()[1]
    assert 0 < len(body) < CHUNKS * CHUNK_BYTES
    assert body == b"".join(chunk(i) for i in range(len(body) // CHUNK_BYTES)), "what came was not the stream's start"


async def test_another_servers_send_reaches_the_app_untouched():
    # A server whose send() already waits for its transport (uvicorn's) needs nothing.
    async def send(message):
        pass

    passed_on = []

    async def app(scope, receive, send):
        passed_on.append(send)

    await SendWaitsForTheSocket(app)({"type": "http"}, None, send)
    assert passed_on == [send]
