"""The runtime: runs untrusted TypeScript vals in a pool of sandboxed Deno processes.

    result = await runtime.evaluate(code="export default (a, b) => a + b", args=[1, 2])
    result = runtime.evaluate_sync(url="http://127.0.0.1:8000/v/alice/foo.ts", env={"TOKEN": "..."})

Plain Python: nothing here needs Django. See runtime/README.md for the security model.
"""

from runtime.config import Limits, PoolConfig
from runtime.engine import Engine, get_engine
from runtime.pool import Pool, RuntimeBusy, RuntimeUnavailable
from runtime.result import LogLine, Result

__all__ = [
    "Engine",
    "Limits",
    "LogLine",
    "Pool",
    "PoolConfig",
    "Result",
    "RuntimeBusy",
    "RuntimeUnavailable",
    "evaluate",
    "evaluate_sync",
    "shutdown",
]


async def evaluate(code=None, **kwargs):
    """Evaluates a val on the process-wide pool. See Pool.evaluate for the arguments."""
    return await get_engine().evaluate(code, **kwargs)


def evaluate_sync(code=None, **kwargs):
    """evaluate() for sync code (a Django view, a management command)."""
    return get_engine().evaluate_sync(code, **kwargs)


def shutdown():
    """Kills every pooled process. The next evaluation starts the pool again."""
    get_engine().shutdown()
