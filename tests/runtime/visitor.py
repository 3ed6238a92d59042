"""A visitor as an ASGI app sees one: the request to receive(), and everything the app
gives send(), with the time it arrived. No server, no sockets."""

import asyncio
import time


class Visitor:
    def __init__(
        self,
        method="GET",
        path="/",
        query=b"",
        headers=(),
        body=b"",
        body_chunks=None,
        host="val.example.com",
        scheme="https",
        seconds_per_chunk=0.0,
        leave_after_chunks=None,
    ):
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": scheme,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "headers": [(b"host", host.encode()), *headers],
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
        }
        self._chunks = list(body_chunks) if body_chunks is not None else [body]
        self.seconds_per_chunk = seconds_per_chunk  # a slow connection
        self.leave_after_chunks = leave_after_chunks
        self.left = asyncio.Event()
        self.sent = []  # (time.monotonic(), message)

    async def receive(self):
        if self._chunks:
            body = self._chunks.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(self._chunks)}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message):
        self.sent.append((time.monotonic(), message))
        if message["type"] == "http.response.body" and message["body"]:
            if self.seconds_per_chunk:
                await asyncio.sleep(self.seconds_per_chunk)
            if self.leave_after_chunks is not None and len(self.body_chunks) >= self.leave_after_chunks:
                self.leave()

    def leave(self):
        self.left.set()

    # --- What the visitor got ------------------------------------------------

    @property
    def start(self):
        return next(message for _, message in self.sent if message["type"] == "http.response.start")

    @property
    def status(self):
        return self.start["status"]

    def headers(self, name):
        return [value.decode() for key, value in self.start["headers"] if key.decode().lower() == name]

    @property
    def body_chunks(self):
        return [message["body"] for _, message in self.sent if message["type"] == "http.response.body" and message["body"]]

    @property
    def chunk_times(self):
        return [at for at, message in self.sent if message["type"] == "http.response.body" and message["body"]]

    @property
    def body(self):
        return b"".join(self.body_chunks)

    @property
    def finished(self):
        """The response was ended properly (a last body message without more_body)."""
        bodies = [message for _, message in self.sent if message["type"] == "http.response.body"]
        return bool(bodies) and not bodies[-1].get("more_body", False)
