"""Host calls: the channel from a val to the platform (send an email, store a blob, call
another val). The guest asks with

    await globalThis[Symbol.for("valtown.host.call")](name, payload)

and the host passes the call to the caller's `on_call(name, payload)`, whose return
value (or exception message) goes back to the val.

The host must treat every call as made by the evaluation's principal: the one the
caller of evaluate() or serve_http() runs the val for. Nothing the guest says about
who it is (in the name, the payload, or forged frames) is to be trusted.
"""

import asyncio
import json
import logging

from runtime import protocol

logger = logging.getLogger(__name__)


class HostCalls:
    """The host calls of one evaluation, or of one HTTP request."""

    def __init__(self, on_call, limits, write):
        self.on_call = on_call
        self.limits = limits
        self.write = write  # sends one message (a dict) to the guest
        self.count = 0
        self.ended_because = None
        self._tasks = set()

    def handle(self, message):
        """Starts the call a guest's "call" message asks for; its reply is sent when it's done."""
        call_id = message["id"]
        if self.ended_because is not None:
            return self._reply_error(call_id, f"host call refused: {self.ended_because}")
        self.count += 1
        if self.count > self.limits.max_host_calls:
            return self._reply_error(
                call_id, f"too many host calls: the limit is {self.limits.max_host_calls} per evaluation"
            )
        if self.on_call is None:
            return self._reply_error(call_id, "host calls are not available here")
        payload = message.get("payload")
        try:
            size = len(json.dumps(payload).encode())
        except RecursionError:  # the harness refuses this first; only a forged frame gets here
            return self._reply_error(call_id, "the host call payload is nested too deeply")
        if size > self.limits.max_host_call_bytes:
            # The harness checks this first; only a forged frame gets here.
            return self._reply_error(
                call_id,
                f"host call payload too large: {size} bytes of JSON, the limit is {self.limits.max_host_call_bytes}",
            )
        task = asyncio.ensure_future(self._call(call_id, message["name"], payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, call_id, name, payload):
        try:
            value = await self.on_call(name, payload)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the host's refusal, in its own words, for the val
            return self._reply_error(call_id, str(error) or type(error).__name__)
        try:
            reply = json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            logger.warning("on_call(%r) returned a value JSON can't carry: %r", name, type(value))
            return self._reply_error(call_id, "the host's reply cannot be converted to JSON")
        if len(reply.encode()) > self.limits.max_host_call_bytes:
            return self._reply_error(
                call_id, f"host call reply too large: the limit is {self.limits.max_host_call_bytes} bytes of JSON"
            )
        if self.ended_because is None:
            self.write({"type": "call_result", "id": call_id, "ok": True, "value": value})

    def _reply_error(self, call_id, message):
        self.write({"type": "call_result", "id": call_id, "ok": False, "error": message})

    def end(self, reason):
        """Refuses later calls, and cancels the ones still running: nobody will read their replies."""
        self.ended_because = reason
        for task in list(self._tasks):
            task.cancel()


def writer_for(stream_writer):
    """A `write` for HostCalls: one message to the guest, dropped if the process is gone."""

    def write(message):
        if not stream_writer.is_closing():
            stream_writer.write(protocol.encode(message))

    return write
