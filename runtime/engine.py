"""The process-wide runtime: one Pool on its own event loop, in a background thread.

Callers on any event loop (daphne's, a test's) `await engine.evaluate(...)`; sync code
calls `engine.evaluate_sync(...)`. Either way the pool itself only ever runs on its own
loop, so it never depends on a caller's loop staying alive.

on_log callbacks run where the caller is: on the caller's event loop for evaluate()
(a coroutine function is scheduled there as a task), and in the caller's own thread for
evaluate_sync(). Lines arrive in order, and all of them before the result. on_call runs
on the caller's event loop too (for evaluate_sync(), on a loop of its own in a worker
thread).

serve_http() is driven from the pool's loop as well: the warm processes' sockets live
there. The caller's ASGI receive() and send() are called on the caller's loop, each
through run_coroutine_threadsafe; the response's messages that are ready together
(head and body, say) cross in one call.
"""

import asyncio
import atexit
import inspect
import os
import queue
import threading

from runtime.config import load_config
from runtime.pool import Pool


class Engine:
    def __init__(self, config=None):
        self.config = config
        self.pool = None
        self._loop = None
        self._thread = None
        self._lock = threading.Lock()
        self._pid = None

    def start(self):
        """Starts the pool thread, if it isn't running. Safe to call from any thread."""
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            config = self.config or load_config()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="valtown-runtime", daemon=True)
            thread.start()
            pool = Pool(config)
            asyncio.run_coroutine_threadsafe(pool.start(), loop).result()
            self.pool, self._loop, self._thread, self._pid = pool, loop, thread, os.getpid()

    def shutdown(self):
        """Kills every process and stops the thread. The engine can be started again."""
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._thread = None
                return
            asyncio.run_coroutine_threadsafe(self.pool.stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self.pool, self._loop, self._thread = None, None, None

    def _submit(self, **kwargs):
        self.start()
        return asyncio.run_coroutine_threadsafe(self.pool.evaluate(**kwargs), self._loop)

    async def evaluate(self, code=None, *, on_log=None, on_call=None, **kwargs):
        """Like Pool.evaluate, from any event loop. Cancelling the caller kills the process."""
        caller_loop = asyncio.get_running_loop()
        if on_log is not None:
            kwargs["on_log"] = _on_loop(on_log, caller_loop)
        if on_call is not None:
            kwargs["on_call"] = _awaited_on(caller_loop, on_call)
        if self._thread is None:
            # Starting waits for the pool to spawn its processes; don't block the loop.
            await caller_loop.run_in_executor(None, self.start)
        future = self._submit(code=code, **kwargs)
        return await asyncio.wrap_future(future, loop=caller_loop)

    async def serve_http(self, key, *, scope, receive, send, on_log=None, on_call=None, **kwargs):
        """Like Pool.serve_http, from any event loop. Returns an HttpOutcome."""
        caller_loop = asyncio.get_running_loop()
        if self._thread is None:
            await caller_loop.run_in_executor(None, self.start)
        if on_log is not None:
            kwargs["on_log"] = _on_loop(on_log, caller_loop)
        if on_call is not None:
            kwargs["on_call"] = _awaited_on(caller_loop, on_call)

        async def send_all(messages):
            for message in messages:
                await send(message)

        coroutine = self.pool.serve_http(
            key,
            scope=scope,
            receive=_awaited_on(caller_loop, receive),
            send_all=_awaited_on(caller_loop, send_all),
            **kwargs,
        )
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return await asyncio.wrap_future(future, loop=caller_loop)

    def evaluate_sync(self, code=None, *, on_log=None, **kwargs):
        """Like Pool.evaluate, from sync code. on_log runs in the calling thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("evaluate_sync() would block this event loop: use await evaluate()")
        if "on_call" in kwargs and kwargs["on_call"] is not None:
            kwargs["on_call"] = _in_a_worker_thread(kwargs["on_call"])
        if on_log is None:
            return self._submit(code=code, **kwargs).result()
        lines = queue.SimpleQueue()
        future = self._submit(code=code, on_log=lambda *line: lines.put(line), **kwargs)
        # Runs after every on_log call, which happen on the pool's loop before it finishes.
        future.add_done_callback(lambda _: lines.put(None))
        while (line := lines.get()) is not None:
            on_log(*line)
        return future.result()


def _on_loop(on_log, loop):
    """An on_log for the pool's loop that runs the caller's callback on the caller's loop."""
    if inspect.iscoroutinefunction(on_log):
        return lambda *line: loop.call_soon_threadsafe(lambda: loop.create_task(on_log(*line)))
    return lambda *line: loop.call_soon_threadsafe(on_log, *line)


def _awaited_on(loop, function):
    """An async function for the pool's loop that runs `function` on `loop` and awaits it there."""

    async def on_the_pool_loop(*args):
        async def on_the_callers_loop():
            return await function(*args)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_the_callers_loop(), loop))

    return on_the_pool_loop


def _in_a_worker_thread(function):
    """For sync callers: each call runs on an event loop of its own, off the pool's loop."""

    async def on_the_pool_loop(*args):
        return await asyncio.to_thread(asyncio.run, function(*args))

    return on_the_pool_loop


_default = Engine()
atexit.register(_default.shutdown)


def get_engine():
    return _default
