"""The host's side of the harness protocol (runtime/harness/messages.ts is the guest's).

One JSON object per line, on a unix socket private to one process:

    host -> guest   {"type": "job", "nonce", "url" | "code", "mode", "export", "args", "env",
                     "maxLogBytes", "maxHostCallBytes", "responseWindowBytes"}
                    {"type": "call_result", "id", "ok": true, "value"} | {..., "ok": false, "error": "..."}
    guest -> host   {"type": "ready"}                      before the job
                    {"type": "log", "nonce", "level", "message", "ts", "request"}
                    {"type": "logs_truncated", "nonce", "request"}
                    {"type": "call", "nonce", "id", "request", "name", "payload"}
    an evaluation:  {"type": "result", "nonce", "ok": true, "value": {...}}
                    {"type": "result", "nonce", "ok": false, "error": {"name", "message", "stack"}}

An HTTP val's warm process (mode "http") answers the job with "loaded", then serves
exchanges, each numbered by the host ("request"):

    host -> guest   {"type": "request", "request", "method", "url", "headers": [[name, value]...],
                     "hasBody", "maxLogBytes", "maxHostCallBytes"}
                    {"type": "body", "request", "data": base64}   {"type": "body_end", "request"}
                    {"type": "credit", "request", "bytes"}        {"type": "abort", "request", "reason"}
    guest -> host   {"type": "loaded", "nonce", "ok": true} | {..., "ok": false, "error": {...}}
                    {"type": "head", "nonce", "request", "status", "headers": [[name, value]...]}
                    {"type": "chunk", "nonce", "request", "data": base64}
                    {"type": "end", "nonce", "request"} | {"type": "fail", "nonce", "request", "error": {...}}
                    {"type": "response", "nonce", "request", "status", "headers", "data": base64}
                        (head, a whole body of at most one chunk, and end, in one message)

The host trusts nothing here beyond "this is what the val produced": every message
after the job must carry the job's nonce (which user code never sees), lines have a
size cap, and anything malformed is dropped.
"""

import json
import re
import secrets
from json.encoder import c_make_encoder, encode_basestring_ascii

LOG_LEVELS = {"log", "info", "warn", "error", "debug"}


class FrameTooLarge(Exception):
    pass


def new_nonce():
    return secrets.token_hex(16)


def encode_job(
    *, nonce, url, code, mode, export, args, env, max_log_bytes, max_host_call_bytes, response_window_bytes=0,
    library=None,
):
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
        "maxHostCallBytes": max_host_call_bytes,
        "responseWindowBytes": response_window_bytes,
        # Restricted Library Mode: {"host", "scheme", "workerImportHosts", "start": bool}.
        "library": library,
    }
    return json.dumps(job).encode() + b"\n"


def _not_json(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


if c_make_encoder is not None:
    # json's C encoder, made once. JSONEncoder.encode makes a new one for every call,
    # which was two thirds of the cost of the message every HTTP request sends (~7.5 µs
    # against ~2.3 on the dev VM). No circular-reference markers: the host builds these
    # messages from plain data, and a cycle would end in a RecursionError anyway.
    _compact_encoder = c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, True)

    def _compact(message):
        return "".join(_compact_encoder(message, 0))
else:
    _compact = json.JSONEncoder(separators=(",", ":")).encode


def encode(message):
    """Any other host -> guest message, as one line."""
    return (_compact(message) + "\n").encode()


def _is_request_id(value, optional=False):
    if value is None:
        return optional
    return isinstance(value, int) and not isinstance(value, bool)


def _is_header_list(value):
    if type(value) is not list:
        return False
    for pair in value:  # a plain loop: this runs for every response
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
            return False
    return True


# A JSON escape for a UTF-16 surrogate. JSON.stringify writes a lone one as such an
# escape (a pair goes out as the character itself), so a line without one has none.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(value):
    """value with each lone UTF-16 surrogate in its strings (keys too) made U+FFFD.

    A val's strings may hold them (`"a\\ud800"`) and Python's str can too, but they have
    no UTF-8 form: nothing the runtime hands back has any. NUL characters are kept: they
    are valid UTF-8, and a store that refuses them replaces them itself.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [well_formed(item) for item in value]
    if isinstance(value, dict):
        return {well_formed(key): well_formed(item) for key, item in value.items()}
    return value


_scan_json = json.JSONDecoder().scan_once


def _whole_json(text):
    """json.loads(text) for a line JSON.stringify wrote (no surrounding whitespace), at half
    its cost: the C scanner without json.loads's Python around it."""
    value, end = _scan_json(text, 0)  # StopIteration or ValueError when it isn't JSON
    if end != len(text):
        raise ValueError("more than one JSON value")
    return value


def parse_message(line, nonce=None):
    """The message in one line, or None if it is not a valid one for this process."""
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogatepass")
    try:
        # Strictly: json.loads would decode a surrogate encoded as UTF-8, which only a
        # frame forged through Deno's internals could hold.
        text = line.decode("utf-8")
        message = _whole_json(text)
        # The backslash test first: it is a memchr, and a response chunk has none.
        if "\\" in text and _SURROGATE_ESCAPE.search(text):
            message = well_formed(message)
    except (ValueError, StopIteration, RecursionError):
        # RecursionError: nested deeper than Python parses. The harness refuses to send
        # that (see MAX_JSON_DEPTH in values.ts), so only a forged frame gets here.
        return None
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind == "ready":
        return message if nonce is None else None
    if nonce is None or message.get("nonce") != nonce:
        return None
    valid = VALID_MESSAGES.get(kind)
    return message if valid is not None and valid(message) else None


def _is_response_head(m):
    """A response's status and headers, as "head" and "response" messages carry them.
    (type() is int: a status that JSON made a bool is not one.)"""
    status = m.get("status")
    return (
        _is_request_id(m.get("request"))
        and type(status) is int
        and 100 <= status <= 599
        and _is_header_list(m.get("headers"))
    )


VALID_MESSAGES = {
    "log": lambda m: (
        m.get("level") in LOG_LEVELS
        and isinstance(m.get("message"), str)
        and isinstance(m.get("ts"), (int, float))
        and _is_request_id(m.get("request"), optional=True)
    ),
    "logs_truncated": lambda m: _is_request_id(m.get("request"), optional=True),
    "result": lambda m: (
        (m.get("ok") is True and isinstance(m.get("value"), dict))
        or (m.get("ok") is False and isinstance(m.get("error"), dict))
    ),
    "call": lambda m: (
        _is_request_id(m.get("id")) and _is_request_id(m.get("request"), optional=True) and isinstance(m.get("name"), str)
    ),
    "loaded": lambda m: m.get("ok") is True or (m.get("ok") is False and isinstance(m.get("error"), dict)),
    "head": _is_response_head,
    "response": lambda m: _is_response_head(m) and isinstance(m.get("data"), str),
    "chunk": lambda m: _is_request_id(m.get("request")) and isinstance(m.get("data"), str),
    "end": lambda m: _is_request_id(m.get("request")),
    "fail": lambda m: _is_request_id(m.get("request")) and isinstance(m.get("error"), dict),
}


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

    def take_buffered(self):
        """What has been read but not yet returned as lines (for whoever reads on)."""
        buffered = bytes(self._buffer)
        self._buffer.clear()
        return buffered

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
