"""What an evaluation produced: the Result of runtime.evaluate()."""

from dataclasses import dataclass, field

SUCCESS = "success"
ERROR = "error"  # the val threw, or its process failed on its own
TIMEOUT = "timeout"  # the host killed it at the wall-clock limit
KILLED = "killed"  # the host killed it for another limit (memory, result size)

# Why a process ended before it could finish normally. Recorded with the result.
REASON_TIMEOUT = "timeout"
REASON_MEMORY = "memory"
REASON_RESULT_TOO_LARGE = "result too large"
REASON_THREADS = "threads"
REASON_CRASHED = "crashed"


@dataclass
class LogLine:
    level: str  # log, info, warn, error, debug; stdout/stderr for raw output
    message: str
    timestamp_ms: float  # milliseconds since the Unix epoch


@dataclass
class Result:
    status: str
    # The return value. value_type tells how to read it:
    #   "json"      value is the JSON value the val returned (None means null)
    #   "undefined" the val returned undefined (or nothing); value is None
    #   "response"  the val returned a Response: value is
    #               {status, status_text, headers, body, body_encoding ("text" | "base64")}
    value: object = None
    value_type: str = "undefined"
    error: dict | None = None  # {"name", "message", "stack"}
    logs: list[LogLine] = field(default_factory=list)
    duration_ms: int = 0
    peak_memory_bytes: int | None = None
    kill_reason: str | None = None

    @property
    def ok(self):
        return self.status == SUCCESS

    def value_record(self):
        """The value with its type marker, as one JSON-able dict to store."""
        return {"type": self.value_type, "value": self.value}


@dataclass
class HttpOutcome:
    """What serving one HTTP request produced: the outcome of runtime.serve_http()."""

    # success: the val answered (even if the visitor left before the end);
    # error: it threw, failed to load, or there was no room for it; timeout; killed.
    status: str
    http_status: int | None = None  # what the visitor got; 499 if they left before any answer
    duration_ms: int = 0
    logs: list[LogLine] = field(default_factory=list)
    error: dict | None = None  # {"name", "message", "stack"}: for the val's owner, never the visitor
    kill_reason: str | None = None
    # The visitor disconnected before the response was complete.
    client_disconnected: bool = False
    # The response ended normally (False: cut short by an error, a timeout or a disconnect).
    response_complete: bool = False
    pid: int | None = None  # the warm process that served it

    @property
    def ok(self):
        return self.status == SUCCESS
