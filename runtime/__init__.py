"""The runtime: runs untrusted TypeScript vals in a pool of sandboxed Deno processes.

    result = await runtime.evaluate(code="export default (a, b) => a + b", args=[1, 2])
    result = runtime.evaluate_sync(url="http://127.0.0.1:8000/v/alice/foo.ts", env={"TOKEN": "..."})
    outcome = await runtime.serve_http(key, code=..., scope=scope, receive=receive, send=send)

    endpoint = runtime.http_endpoint(key, code=...)  # kept, for many requests to one val
    outcome = await endpoint.serve(scope, receive, send)

Plain Python: nothing here needs Django. See runtime/README.md for the security model.
"""

from runtime.config import Limits, PoolConfig, Tenant, load_config
from runtime.engine import Engine, get_engine
from runtime.grants import import_grant
from runtime.exceptions import RuntimeBusy, RuntimeUnavailable
from runtime.pool import HttpEndpoint, Pool
from runtime.result import HttpOutcome, LogLine, Result
from runtime.sandbox import DENIED_ENV

__all__ = [
    "DENIED_ENV",
    "Engine",
    "HttpEndpoint",
    "HttpOutcome",
    "Limits",
    "LogLine",
    "Pool",
    "PoolConfig",
    "Result",
    "RuntimeBusy",
    "RuntimeUnavailable",
    "Tenant",
    "evaluate",
    "evaluate_sync",
    "http_endpoint",
    "import_grant",
    "processes_per_tenant",
    "serve_http",
    "shutdown",
]


async def evaluate(code=None, **kwargs):
    """Evaluates a val on the process-wide pool. See Pool.evaluate for the arguments."""
    return await get_engine().evaluate(code, **kwargs)


def evaluate_sync(code=None, **kwargs):
    """evaluate() for sync code (a Django view, a management command)."""
    return get_engine().evaluate_sync(code, **kwargs)


def http_endpoint(key, **kwargs):
    """An HTTP val as the process-wide engine serves it, on the caller's event loop. See HttpEndpoint."""
    return get_engine().http_endpoint(key, **kwargs)


async def serve_http(key, **kwargs):
    """Serves one ASGI HTTP request with an HTTP val's warm process. See Pool.serve_http."""
    return await get_engine().serve_http(key, **kwargs)


def processes_per_tenant():
    """How many evaluation processes one tenant may hold on the process-wide engine."""
    engine = get_engine()
    return (engine.config or load_config()).processes_per_tenant


def shutdown():
    """Kills every pooled process. The next evaluation starts the pool again."""
    get_engine().shutdown()
