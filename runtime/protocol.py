"""The host's side of the harness protocol (runtime/harness/messages.ts is the guest's).

One JSON object per line, on a unix socket private to one process:

    host -> guest   {"type": "job", "nonce", "url" | "code", "mode", "export", "args", "env", "maxLogBytes"}
    guest -> host   {"type": "ready"}                      before the job
                    {"type": "log", "nonce", "level", "message", "ts"}
                    {"type": "logs_truncated", "nonce"}
                    {"type": "result", "nonce", "ok": true, "value": {...}}
                    {"type": "result", "nonce", "ok": false, "error": {"name", "message", "stack"}}

The host trusts nothing here beyond "this is what the evaluation produced": every
message after the job must carry the job's nonce (which user code never sees), lines
have a size cap, and anything malformed is dropped.
"""

import json
import secrets

LOG_LEVELS = {"log", "info", "warn", "error", "debug"}


class FrameTooLarge(Exception):
    pass


def new_nonce():
    return secrets.token_hex(16)


def encode_job(*, nonce, url, code, mode, export, args, env, max_log_bytes):
    job = {
        "type": "job",
        "nonce": nonce,
        "url": url,
        "code": code,
        "mode": mode,
        "export": export,
        "args": args,
        "env": env,
        "maxLogBytes": max_log_bytes,
    }
    return json.dumps(job).encode() + b"\n"


def parse_message(line, nonce=None):
    """The message in one line, or None if it is not a valid one for this evaluation."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind == "ready":
        return message if nonce is None else None
    if nonce is None or message.get("nonce") != nonce:
        return None
    if kind == "log":
        if message.get("level") not in LOG_LEVELS or not isinstance(message.get("message"), str):
            return None
        if not isinstance(message.get("ts"), (int, float)):
            return None
        return message
    if kind == "logs_truncated":
        return message
    if kind == "result":
        if message.get("ok") is True and isinstance(message.get("value"), dict):
            return message
        if message.get("ok") is False and isinstance(message.get("error"), dict):
            return message
    return None


def decode_value(wire):
    """(value_type, value) for a result's wire value."""
    kind = wire.get("kind")
    if kind == "json":
        return "json", wire.get("json")
    if kind == "response":
        return "response", {
            "status": wire.get("status"),
            "status_text": wire.get("statusText", ""),
            "headers": dict(wire.get("headers") or []),
            "body": wire.get("body", ""),
            "body_encoding": wire.get("bodyEncoding", "text"),
        }
    return "undefined", None


def decode_error(error):
    def text(key):
        value = error.get(key)
        return value if isinstance(value, str) else ""

    return {"name": text("name") or "Error", "message": text("message"), "stack": text("stack")}


class LineReader:
    """Reads newline-terminated lines from a stream, refusing any line over max_bytes."""

    def __init__(self, stream, max_bytes):
        self.stream = stream
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._eof = False

    async def read_line(self):
        """The next line without its newline, or None at end of stream."""
        while True:
            end = self._buffer.find(b"\n")
            if end > self.max_bytes:
                raise FrameTooLarge(f"a message was longer than {self.max_bytes} bytes")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > self.max_bytes:
                raise FrameTooLarge(f"a message was longer than {self.max_bytes} bytes")
            if self._eof:
                return None
            try:
                chunk = await self.stream.read(64 * 1024)
            except ConnectionError:  # the process died: the same as end of stream
                chunk = b""
            if not chunk:
                self._eof = True
                if self._buffer:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None
            self._buffer += chunk
