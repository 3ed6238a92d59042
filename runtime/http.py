"""One HTTP request served by an HTTP val's warm process: the ASGI side of an exchange.

An Exchange runs on the pool's event loop. It reads the visitor's request from ASGI
receive() and streams it to the guest, and passes the guest's response to ASGI send()
as it is produced. The guest streams at most http_response_window_bytes ahead: the
host credits each chunk back only once send() has taken it, so a slow visitor holds
the val back instead of filling memory, as long as send() waits while the visitor's
connection is full (daphne's doesn't on its own: valtown/backpressure.py makes it).
What the visitor sees when things go wrong:

    body over max_body_bytes          413 (the handler is not called, or is aborted)
    handler threw before answering    500, a plain page; the stack is in outcome.error
    process died before answering     502
    no place for the request          503 with Retry-After
    timeout before answering          504
    any of these after answering      the response ends where it was (outcome says so)

When the visitor leaves (http.disconnect), the guest's Request.signal aborts and the
response stream is cancelled. A visitor who stops reading without leaving holds a
streamed response's send() at most until the deadline: then the request times out.
"""

import asyncio
import base64
import binascii
import logging
import re
import time
from collections import deque
from urllib.parse import quote

from runtime.exceptions import RuntimeBusy, RuntimeUnavailable
from runtime.hostcalls import HostCalls
from runtime.process import LogCollector
from runtime.result import ERROR, REASON_TIMEOUT, SUCCESS, TIMEOUT, HttpOutcome
from runtime.warm import ProcessGone

logger = logging.getLogger(__name__)

BODY_CHUNK_BYTES = 64 * 1024
# After an abort, how long the guest has to let go of the request. A guest that doesn't
# answer by then is stuck (a val in an endless loop blocks its whole process): killed.
ABORT_GRACE_SECONDS = 1.0
# A GET's (empty) body isn't read, nor a disconnect watched for, until its answer has
# taken this long.
WATCH_FOR_DISCONNECT_AFTER_SECONDS = 0.05
RETRY_AFTER_SECONDS = 1
# What the outcome records when the visitor left before any answer (nginx's convention).
CLIENT_CLOSED_REQUEST = 499
REASON_PHRASES = {
    413: "Payload Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# The ASGI server's business, not the val's: passing them on would confuse its framing.
HOP_BY_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
HOST_HEADER = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


class SlowAnswerWatch:
    """Tells a loop's GET exchanges when their answer has taken
    WATCH_FOR_DISCONNECT_AFTER_SECONDS (see Exchange.watch_for_disconnect). One timer
    serves them all, instead of a timer each armed and cancelled for every request: to a
    quick answer, being watched costs adding itself to a dict and taking itself out.
    (Out at once when it ends: an exchange kept here until its time came outlived its
    request, and many such got the garbage collector walking them.)"""

    def __init__(self, loop):
        self.loop = loop
        self._due = {}  # exchange -> when its answer is late, in the order they fall due
        self._timer = None

    def add(self, exchange):
        """The exchange's answer is late at loop.time() + WATCH_FOR_DISCONNECT_AFTER_SECONDS."""
        when = self.loop.time() + WATCH_FOR_DISCONNECT_AFTER_SECONDS
        self._due[exchange] = when
        if self._timer is None:
            self._timer = self.loop.call_at(when, self._tell_the_late_ones)

    def discard(self, exchange):
        """The exchange is over."""
        self._due.pop(exchange, None)

    def _tell_the_late_ones(self):
        self._timer = None
        now, due = self.loop.time(), self._due
        for exchange, when in list(due.items()):
            if when > now:
                self._timer = self.loop.call_at(when, self._tell_the_late_ones)
                return
            del due[exchange]
            exchange.watch_for_disconnect()


class Exchange:
    def __init__(self, warm_pool, endpoint, *, scope, receive, send_all, on_log, on_call, slow_answers):
        self.warm_pool = warm_pool
        self.loop = warm_pool.loop
        self.slow_answers = slow_answers
        self.endpoint = endpoint  # the HttpEndpoint (runtime/pool.py): key, job, limits
        self.limits = endpoint.limits
        self.scope = scope
        self.receive = receive
        self.send_all = send_all
        self.on_call = on_call
        self.logs = LogCollector(endpoint.limits.max_log_bytes, on_log, what="request")
        # ("guest", message), ("disconnect",), ("too large",), ("exited",), ("timeout",)
        self._events = deque()
        self._event_arrived = None  # a future while the exchange waits for an event
        self._timer = None  # first the disconnect watch (a GET), then the deadline
        self._deadline = None  # on the loop's clock
        self.warm = None
        self.request_id = None
        self.host_calls = None  # made at the val's first host call: most requests make none
        self.guest_has_it = False  # the guest is handling the request and hasn't ended it
        self.http_status = None  # set once the response has started
        self.client_disconnected = False
        self._body_pump = None
        self._host = None  # the Host header
        self._outbox = []  # ASGI messages to send in one go
        self._credit_due = 0
        self._streamed = False  # the response is a head and chunks, not one whole message

    @property
    def response_started(self):
        return self.http_status is not None

    async def serve(self):
        started = time.monotonic()
        try:
            outcome = await self._serve()
        finally:
            await self._clean_up()
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        outcome.logs = self.logs.lines
        outcome.pid = self.warm.pid if self.warm else None
        outcome.client_disconnected = self.client_disconnected
        return outcome

    # --- Events: what the guest sends, the visitor leaving, the time running out ---

    def deliver(self, event):
        self._events.append(event)
        waiter = self._event_arrived
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_event(self):
        if not self._events:
            self._event_arrived = self.loop.create_future()
            try:
                await self._event_arrived
            finally:
                self._event_arrived = None
        return self._events.popleft()

    def host_call(self, message):
        """A "call" message from the guest, made while handling this request."""
        if self.host_calls is None:
            self.host_calls = HostCalls(self.on_call, self.limits, self.warm.send)
        self.host_calls.handle(message)

    def _time_is_up(self):
        self._timer = None
        self.deliver(("timeout",))

    def watch_for_disconnect(self):
        """A GET's answer is taking a while: from now on, notice the visitor leaving."""
        self._timer = self.loop.call_at(self._deadline, self._time_is_up)
        self._start_body_pump(forward=False)

    async def _serve(self):
        if self.scope.get("type") != "http":
            raise ValueError("serve_http needs an ASGI scope of type http")
        self._host, length = host_and_length(self.scope)
        if length is not None and length > self.endpoint.max_body_bytes:
            await self._answer_with_error(413)
            return self._too_large()
        try:
            endpoint = self.endpoint
            self.warm = await self.warm_pool.admit(endpoint.key, endpoint.job, self, endpoint.tenant)
        except (RuntimeBusy, RuntimeUnavailable) as error:
            return await self._no_room(error)
        self._deadline = self.loop.time() + self.limits.timeout_seconds
        loaded = self.warm.loaded
        if loaded.done() and not loaded.cancelled() and loaded.exception() is None:
            load_error = loaded.result()  # a warm process: the common case
        else:
            try:
                async with asyncio.timeout_at(self._deadline):
                    load_error = await asyncio.shield(loaded)
            except TimeoutError:
                await self._answer_with_error(504)
                return self._timed_out()
            except RuntimeUnavailable as error:
                return await self._no_room(error)
            except ProcessGone:
                return await self._process_exited()
        if load_error is not None:
            # Retired, so that the next request loads the val again (an import may
            # have failed for a passing reason).
            self.warm_pool.retire(self.warm)
            await self._answer_with_error(500)
            return HttpOutcome(status=ERROR, http_status=500, error=load_error)
        if not self.warm.alive:
            return await self._process_exited()
        self._send_request()
        return await self._relay()

    def _send_request(self):
        warm = self.warm
        self.request_id = warm.next_request_id
        warm.next_request_id += 1
        warm.exchanges[self.request_id] = self
        warm.allow_frames_of(self.limits.max_host_call_bytes)
        method = self.scope.get("method", "GET").upper()
        has_body = method not in ("GET", "HEAD")
        warm.send({
            "type": "request",
            "request": self.request_id,
            "method": method,
            "url": public_url(self.scope, self._host),
            "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in self.scope["headers"]],
            "hasBody": has_body,
            "maxLogBytes": self.limits.max_log_bytes,
            "maxHostCallBytes": self.limits.max_host_call_bytes,
        })
        self.guest_has_it = True
        loop = self.loop
        if has_body:
            self._start_body_pump(forward=True)
            self._timer = loop.call_at(self._deadline, self._time_is_up)
        elif loop.time() + WATCH_FOR_DISCONNECT_AFTER_SECONDS < self._deadline:
            # Nothing to read but a disconnect, which matters only for an answer that
            # takes a while: a quick one is spared the cost of calling receive().
            self.slow_answers.add(self)
        else:
            self.watch_for_disconnect()  # a timeout shorter than that

    def _start_body_pump(self, forward):
        if self._body_pump is None:
            self._body_pump = asyncio.ensure_future(self._pump_body(forward))

    # --- The request body, and the visitor leaving ---------------------------

    async def _pump_body(self, forward):
        received = 0
        try:
            more = True
            while more:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    self.deliver(("disconnect",))
                    return
                if message["type"] != "http.request":
                    continue
                body = message.get("body") or b""
                more = message.get("more_body", False)
                if more and not body:
                    await asyncio.sleep(0)  # receive() may not suspend: let the loop breathe
                received += len(body)
                if received > self.endpoint.max_body_bytes:
                    self.deliver(("too large",))
                    return
                if forward and body:
                    for offset in range(0, len(body), BODY_CHUNK_BYTES):
                        data = base64.b64encode(body[offset : offset + BODY_CHUNK_BYTES]).decode()
                        self.warm.send({"type": "body", "request": self.request_id, "data": data})
                    await self.warm.drain()
            if forward:
                self.warm.send({"type": "body_end", "request": self.request_id})
            # With the body read, receive() only returns when the visitor leaves. (A
            # receive() that answers anything else can't tell: then stop asking. This
            # runs on the caller's loop, where asking again at once would never yield.)
            if (await self.receive())["type"] == "http.disconnect":
                self.deliver(("disconnect",))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.debug("ASGI receive() failed; taking it as a disconnect", exc_info=True)
            self.deliver(("disconnect",))

    # --- The response --------------------------------------------------------

    async def _relay(self):
        """Passes the guest's response on until the exchange is over. Returns the outcome."""
        events = self._events
        while True:
            outcome = await self._handle(await self._next_event())
            # Whatever else has arrived goes to the visitor in the same send.
            while outcome is None and events:
                outcome = await self._handle(events.popleft())
            await self._flush()
            if outcome is not None:
                return outcome

    async def _handle(self, event):
        kind = event[0]
        if kind == "guest":
            return await self._handle_guest(event[1])
        await self._flush()
        if kind == "exited":
            return await self._process_exited()
        return await self._stop(kind)

    async def _handle_guest(self, message):
        kind = message["type"]
        if kind == "response" and not self.response_started:
            # The whole response at once: the head, a body of at most one chunk, the end.
            self.guest_has_it = False
            self.http_status = message["status"]
            try:
                body = _decoded(message["data"])
            except ValueError:
                body = b""  # only a forged frame holds anything but base64
            headers = _headers(message["headers"])
            if _may_have_a_body(self.http_status) and not _has_header(headers, b"content-length"):
                # Its length is known, as Deno's own server would say (else: chunked).
                headers.append((b"content-length", str(len(body)).encode()))
            self._outbox.append({"type": "http.response.start", "status": self.http_status, "headers": headers})
            self._outbox.append({"type": "http.response.body", "body": body, "more_body": False})
            return HttpOutcome(status=SUCCESS, http_status=self.http_status, response_complete=True)
        if kind == "head" and not self.response_started:
            self.http_status = message["status"]
            self._streamed = True
            self._outbox.append(
                {"type": "http.response.start", "status": message["status"], "headers": _headers(message["headers"])}
            )
        elif kind == "chunk" and self.response_started:
            try:
                body = _decoded(message["data"])
            except ValueError:
                return None
            self._outbox.append({"type": "http.response.body", "body": body, "more_body": True})
            self._credit_due += len(body)
        elif kind == "end":
            self.guest_has_it = False
            if not self.response_started:  # can't happen with the harness; a forged frame
                await self._answer_with_error(500)
                return HttpOutcome(status=ERROR, http_status=500, error=_error("Error", "the val sent no response"))
            self._end_response()
            return HttpOutcome(status=SUCCESS, http_status=self.http_status, response_complete=True)
        elif kind == "fail":
            self.guest_has_it = False
            error = _described(message["error"])
            if not self.response_started:
                await self._answer_with_error(500)
            else:
                self._end_response()  # cut short: the visitor has what was sent
            return HttpOutcome(status=ERROR, http_status=self.http_status, error=error)
        return None

    def _end_response(self):
        last = self._outbox[-1] if self._outbox else None
        if last is not None and last["type"] == "http.response.body":
            last["more_body"] = False
        else:
            self._outbox.append({"type": "http.response.body", "body": b"", "more_body": False})

    async def _flush(self):
        """Sends what the outbox holds, then tells the guest how much has gone."""
        if not self._outbox:
            return
        messages, self._outbox = self._outbox, []
        credit, self._credit_due = self._credit_due, 0
        if self.client_disconnected:
            return
        try:
            if self._streamed:
                if not await self._send_before_the_deadline(messages):
                    return  # the deadline's own timer delivers ("timeout",)
            else:
                await self.send_all(messages)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.debug("ASGI send() failed; taking it as a disconnect", exc_info=True)
            self.client_disconnected = True
            self.deliver(("disconnect",))
            return
        if credit and self.guest_has_it:
            self.warm.send({"type": "credit", "request": self.request_id, "bytes": credit})

    async def _send_before_the_deadline(self, messages):
        """send_all(messages), given up when the deadline comes first (then False).

        A send() that waits until the visitor's connection can take more (uvicorn's;
        daphne's, as the platform's entry point makes it) would wait for ever on a
        visitor who stopped reading: the request ends at its deadline instead, as any
        other does. Only a streamed response's sends are watched: a whole response,
        the common case, is spared the timer."""
        deadline = asyncio.timeout_at(self._deadline)
        try:
            async with deadline:
                await self.send_all(messages)
        except TimeoutError:
            if deadline.expired():
                return False
            raise
        return True

    async def _answer_with_error(self, status, extra_headers=()):
        """A plain page: nothing of the val's error reaches the visitor."""
        body = f"{status} {REASON_PHRASES[status]}\n".encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        self.http_status = status
        self._outbox.append({"type": "http.response.start", "status": status, "headers": headers + list(extra_headers)})
        self._outbox.append({"type": "http.response.body", "body": body, "more_body": False})
        await self._flush()

    # --- Ends other than the val's own ---------------------------------------

    async def _stop(self, why):
        """Ends the exchange early: a timeout, the visitor leaving, or a body too large."""
        if why == "disconnect":
            self.client_disconnected = True
        if self.guest_has_it:
            reasons = {TIMEOUT: "the request timed out", "disconnect": "the client disconnected",
                       "too large": "the request body is too large"}
            self.warm.send({"type": "abort", "request": self.request_id, "reason": reasons[why]})
        if why == "disconnect":
            outcome = HttpOutcome(status=SUCCESS, http_status=self.http_status or CLIENT_CLOSED_REQUEST)
        elif not self.response_started:
            await self._answer_with_error(504 if why == TIMEOUT else 413)
            outcome = self._timed_out() if why == TIMEOUT else self._too_large()
        else:
            self._end_response()
            await self._flush()
            outcome = self._timed_out() if why == TIMEOUT else self._too_large()
        await self._wait_for_the_guest_to_let_go()
        return outcome

    async def _wait_for_the_guest_to_let_go(self):
        try:
            async with asyncio.timeout(ABORT_GRACE_SECONDS):
                while self.guest_has_it:
                    event = await self._next_event()
                    if event[0] == "exited" or (event[0] == "guest" and event[1]["type"] in ("end", "fail", "response")):
                        self.guest_has_it = False
        except TimeoutError:
            logger.warning("A warm HTTP process did not let go of an aborted request; killing it")
            self.guest_has_it = False
            self.warm.kill(REASON_TIMEOUT)

    async def _process_exited(self):
        self.guest_has_it = False
        status, kill_reason, error = self.warm.exit_outcome()
        if not self.response_started:
            await self._answer_with_error(502)
        else:
            self._end_response()
            await self._flush()
        return HttpOutcome(status=status, http_status=self.http_status, error=error, kill_reason=kill_reason)

    async def _no_room(self, error):
        retry_after = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
        await self._answer_with_error(503, retry_after)
        return HttpOutcome(status=ERROR, http_status=503, error=_error(type(error).__name__, str(error)))

    def _timed_out(self):
        message = f"the request ran for longer than {self.limits.timeout_seconds:g} s and was stopped"
        return HttpOutcome(
            status=TIMEOUT, http_status=self.http_status, kill_reason=REASON_TIMEOUT,
            error=_error("TimeoutError", message),
        )

    def _too_large(self):
        message = f"the request body is over {self.endpoint.max_body_bytes:,} bytes"
        return HttpOutcome(status=ERROR, http_status=self.http_status or 413, error=_error("PayloadTooLarge", message))

    async def _clean_up(self):
        self.slow_answers.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._body_pump is not None:
            self._body_pump.cancel()
            await asyncio.gather(self._body_pump, return_exceptions=True)
        if self.guest_has_it and self.warm.alive:
            # The caller gave up on us (cancelled): the guest should too.
            self.warm.send({"type": "abort", "request": self.request_id, "reason": "the request was cancelled"})
        if self.host_calls is not None:
            self.host_calls.end("the request has ended")
        if self.warm is not None:
            self.warm_pool.release(self.warm, self)


def _decoded(data):
    """A body chunk's base64, decoded; ValueError if it is anything else. (binascii's own
    strict check: base64.b64decode's validate=True matches a regular expression first.)"""
    return binascii.a2b_base64(data, strict_mode=True)


def _headers(pairs):
    """The val's response headers for ASGI, without the hop-by-hop ones."""
    return [
        (name.encode("latin-1", "replace"), value.encode("latin-1", "replace"))
        for name, value in pairs
        if name.lower() not in HOP_BY_HOP_HEADERS
    ]


def _has_header(headers, name):
    return any(key.lower() == name for key, _ in headers)


def _may_have_a_body(status):
    """Not 1xx, 204 or 304: those responses have no body, so no Content-Length either."""
    return status >= 200 and status not in (204, 304)


def _error(name, message):
    return {"name": name, "message": message, "stack": ""}


def _described(error):
    def text(key):
        value = error.get(key)
        return value if isinstance(value, str) else ""

    return {"name": text("name") or "Error", "message": text("message"), "stack": text("stack")}


def host_and_length(scope):
    """The request's Host header and its declared Content-Length (None when missing, or
    not a number), found in one pass over the headers."""
    host = declared = None
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name == b"host" and host is None:
            host = value.decode("latin-1")
        elif name == b"content-length" and declared is None:
            declared = value
    try:
        return host, int(declared) if declared is not None else None
    except ValueError:
        return host, None


def public_url(scope, host):
    """The URL the visitor used: scheme, Host header (`host`), path and query, from the ASGI scope."""
    scheme = scope.get("scheme") or "http"
    if not host or not HOST_HEADER.match(host):
        server = scope.get("server")
        if server and server[1] is not None:
            name = f"[{server[0]}]" if ":" in server[0] else server[0]
            host = f"{name}:{server[1]}"
        else:
            host = "localhost"
    raw_path = scope.get("raw_path")
    if raw_path:
        path = raw_path.decode("latin-1").split("?", 1)[0]
    else:
        path = quote(scope.get("path") or "/", safe="/:@!$&'()*+,;=-._~%")
    query = scope.get("query_string") or b""
    return f"{scheme}://{host}{path}" + (f"?{query.decode('latin-1')}" if query else "")
