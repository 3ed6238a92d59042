"""What the runtime raises when it can't take on more work."""


class RuntimeBusy(Exception):
    """Every process is busy and the wait queue is full, or the wait took too long."""


class RuntimeUnavailable(Exception):
    """The pool can't start Deno processes at all (or has been stopped)."""
