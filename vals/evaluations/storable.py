"""Making what a val produced safe to store and show.

A val can produce text no database takes (lone UTF-16 surrogates, NUL characters) and
JSON nested deeper than any recursion allows. Nothing a val produces may stop its
evaluation from being recorded."""

from django.conf import settings

MAX_DEPTH = 64
TOO_DEEP = "[nested too deeply to show]"


def storable_text(text):
    if not isinstance(text, str):
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def storable(value, depth=0):
    if isinstance(value, str):
        return storable_text(value)
    if depth >= MAX_DEPTH and isinstance(value, (list, dict)):
        return TOO_DEEP
    if isinstance(value, list):
        return [storable(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {storable_text(str(key)): storable(item, depth + 1) for key, item in value.items()}
    return value


# What a stored line costs beyond its text, so that a flood of empty lines is capped too.
LINE_OVERHEAD_BYTES = 32


class RecordedLogs:
    """An evaluation's log lines as they are stored and shown: secrets redacted, text
    storable, and capped at EVALUATION_MAX_LOG_BYTES, past which one "logs truncated"
    line is kept and the rest dropped."""

    def __init__(self, redactor):
        self.redactor = redactor
        self.lines = []
        self.stored_bytes = 0
        self.truncated = False

    def add(self, level, message, timestamp_ms):
        """The line as recorded, or None once the cap has been reached."""
        if self.truncated:
            return None
        message = storable_text(self.redactor.text(message))
        self.stored_bytes += len(message.encode("utf-8")) + LINE_OVERHEAD_BYTES
        if self.stored_bytes > settings.EVALUATION_MAX_LOG_BYTES:
            self.truncated = True
            level, message = "warn", f"logs truncated: this evaluation logged more than {settings.EVALUATION_MAX_LOG_BYTES:,} bytes"
        line = {"seq": len(self.lines), "level": level, "message": message, "ts": timestamp_ms}
        self.lines.append(line)
        return line


def recorded_error(error, redactor):
    """A runtime error ({name, message, stack}) as stored: redacted and storable."""
    if not error:
        return None
    return {key: storable_text(redactor.text(error.get(key) or "")) for key in ("name", "message", "stack")}
