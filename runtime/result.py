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
