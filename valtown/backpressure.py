"""Backpressure under daphne: a response's send() waits while the connection's write
buffer is full, so that what a response has in flight is bounded whatever the visitor
does.

daphne's send() hands the bytes to Twisted, which appends them to the transport's
buffer and returns at once, however far behind the visitor is. Anything that paces
itself by send() returning (an HTTP val's response window: the runtime credits a chunk
back to the val once send() has taken it) was then paced by nothing, and a visitor who
stopped reading let a stream pile up in this process: 300 MB in 5 s from one request.

Twisted knows when its buffer is full: a streaming producer registered on the request
(IPushProducer: pauseProducing, resumeProducing, stopProducing) is paused when a write
takes the transport's buffer over its bufferSize (64 KiB), and resumed once the
transport has handed all of it to the kernel; stopped when the connection is lost. So
while a response streams, its send() returns at once as long as the buffer has room,
and after a write that filled it waits until the buffer has drained (or the visitor
has gone). Each request then has in Twisted's buffer at most 64 KiB plus the message
that filled it, however fast the app produces. A response's last message never waits:
it is the end, and the app has nothing more to hold back.

Only daphne's send() is wrapped (it is recognised by what daphne passes: a partial of
its Server.handle_reply bound to the request; tests/security/test_streaming_backpressure.py
fails should a daphne release pass something else). Another server's send() reaches the
app untouched: one that already waits for its transport to drain (uvicorn's) needs
nothing. Cost: about 1 us a request, and a fraction of one a streamed chunk.
"""

import asyncio
import functools
import sys


class SendWaitsForTheSocket:
    """ASGI middleware: under daphne, an HTTP response's send() waits while the
    connection's write buffer is full (see the module's docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            request = _daphne_request(send)
            if request is not None:
                watch = _WriteBufferWatch(request, send)
                try:
                    return await self.app(scope, receive, watch.send)
                finally:
                    watch.close()
        return await self.app(scope, receive, send)


def _daphne_request(send):
    """The Twisted request behind daphne's send(), or None for any other server's."""
    if type(send) is not functools.partial or len(send.args) != 1:
        return None
    server_module = sys.modules.get("daphne.server")  # never imported here: it installs a reactor
    if server_module is None or not isinstance(getattr(send.func, "__self__", None), server_module.Server):
        return None
    request = send.args[0]
    return request if hasattr(request, "registerProducer") else None


class _WriteBufferWatch:
    """One request's send(), and the streaming producer Twisted pauses while the
    request's connection has more than its buffer's worth waiting to be written."""

    __slots__ = ("request", "_send", "_registered", "_paused", "_stopped", "_resumed")

    def __init__(self, request, send):
        self.request = request
        self._send = send  # daphne's
        self._registered = False
        self._paused = False
        self._stopped = False  # the connection is gone
        self._resumed = None  # a future while send() waits for the buffer to drain

    async def send(self, message):
        if message["type"] != "http.response.body":
            return await self._send(message)
        if not message.get("more_body", False):
            # The end: Twisted finishes the request with it, and a producer still
            # registered then would be an error in its log.
            self._unregister()
            return await self._send(message)
        if not self._registered and not self._stopped:
            self._register()
        await self._send(message)
        if self._paused and not self._stopped:
            await self._buffer_drained()

    async def _buffer_drained(self):
        self._resumed = asyncio.get_running_loop().create_future()
        try:
            await self._resumed
        finally:
            self._resumed = None

    def _register(self):
        try:
            self.request.registerProducer(self, True)
        except (RuntimeError, ValueError):
            # Something else already produces for this request (Twisted allows one):
            # this response goes unwatched rather than failing.
            self._stopped = True
            return
        self._registered = True

    def _unregister(self):
        if self._registered:
            self._registered = False
            if getattr(self.request, "channel", None) is not None:  # None once the connection is lost
                self.request.unregisterProducer()

    def close(self):
        """The app has returned (or failed): let go of the request."""
        self._unregister()
        self._stopped = True
        self._wake()

    def _wake(self):
        waiter = self._resumed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- IPushProducer, called by Twisted on the reactor's (the same) loop ---

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self._wake()

    def stopProducing(self):
        self._stopped = True
        self._wake()
