"""The process-wide runtime: one Pool on its own event loop, in a background thread.

Callers on any event loop (daphne's, a test's) `await engine.evaluate(...)`; sync code
calls `engine.evaluate_sync(...)`. Either way the pool itself only ever runs on its own
loop, so it never depends on a caller's loop staying alive.

on_log callbacks run where the caller is: on the caller's event loop for evaluate()
(a coroutine function is scheduled there as a task), and in the caller's own thread for
evaluate_sync(). Lines arrive in order, and all of them before the result. on_call runs
on the caller's event loop too (for evaluate_sync(), on a loop of its own in a worker
thread).

serve_http() is different: it runs on the caller's own loop, with a pool of warm
processes bound to that loop (one per event loop, so under daphne exactly one). An HTTP
request is a few small messages, and crossing to another thread and back for each cost
more than all the rest of its handling (about 180 us a round trip, and the two threads
then share one GIL). That pool's processes are killed when their loop is torn down
(asyncio.run() and test runners cancel every task; a guard task then kills them), when
a later serve_http() finds the loop closed, and at shutdown().
"""

import asyncio
import atexit
import inspect
import os
import queue
import threading

from runtime.config import load_config
from runtime.exceptions import RuntimeUnavailable
from runtime.pool import HttpEndpoint, Pool


class _LoopPool:
    """The HTTP pool of one event loop: a Pool without evaluation slots."""

    def __init__(self, pool):
        self.pool = pool
        self.started = None  # the task starting it
        self.ready = False  # it has started
        self.guard = None  # the task that kills its processes when the loop goes away


class Engine:
    def __init__(self, config=None):
        self.config = config
        self.pool = None
        self._loop = None
        self._thread = None
        self._lock = threading.Lock()
        self._pid = None
        self._http_pools = {}  # event loop -> _LoopPool, for serve_http() on that loop

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
            http_pools, self._http_pools = self._http_pools, {}
        for loop, entry in http_pools.items():
            _stop_http_pool(loop, entry)
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

    def http_endpoint(self, key, **kwargs):
        """The HTTP val `key` as served on whichever event loop calls its serve(), by the
        warm processes of that loop. See HttpEndpoint (runtime/pool.py)."""
        return HttpEndpoint(self._http_pool_for_this_loop, self.config or load_config(), key, **kwargs)

    async def serve_http(self, key, *, scope, receive, send, on_log=None, **kwargs):
        """Like Pool.serve_http, on the caller's event loop, with the warm processes of
        that loop. on_log may be a coroutine function here. Returns an HttpOutcome."""
        if on_log is not None and inspect.iscoroutinefunction(on_log):
            on_log = _as_task(on_log)
        pool = await self._http_pool_for_this_loop()
        return await pool.serve_http(key, scope=scope, receive=receive, send=send, on_log=on_log, **kwargs)

    async def _http_pool_for_this_loop(self):
        loop = asyncio.get_running_loop()
        entry = self._http_pools.get(loop)
        if entry is None or not entry.ready:
            entry = await self._started_http_pool(loop)
        return entry.pool

    async def _started_http_pool(self, loop):
        entry = self._new_http_pool(loop)  # or the one it has
        try:
            await asyncio.shield(entry.started)
        except Exception as error:  # the next request tries again
            with self._lock:
                if self._http_pools.get(loop) is entry:
                    del self._http_pools[loop]
            raise RuntimeUnavailable(f"runtime unavailable: the HTTP pool failed to start: {error}") from error
        entry.ready = True
        return entry

    def _new_http_pool(self, loop):
        with self._lock:
            entry = self._http_pools.get(loop)
            if entry is not None:
                return entry
            gone = [(other, old) for other, old in self._http_pools.items() if other.is_closed()]
            for other, _ in gone:
                del self._http_pools[other]
            config = (self.config or load_config()).with_changes(pool_size=0)
            entry = _LoopPool(Pool(config))
            entry.started = loop.create_task(entry.pool.start())
            entry.guard = loop.create_task(self._guard(loop, entry))
            # A loop merely stopped at exit never cancels it (shutdown() then kills the
            # processes): that is expected, not worth a "Task was destroyed" message.
            entry.guard._log_destroy_pending = False
            self._http_pools[loop] = entry
        for other, old in gone:
            _stop_http_pool(other, old)
        return entry

    async def _guard(self, loop, entry):
        """Waits for its loop to be torn down, then kills the loop's warm processes."""
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            with self._lock:
                if self._http_pools.get(loop) is entry:
                    del self._http_pools[loop]
            if entry.pool.http is not None:
                entry.pool.http.kill_now()
                try:
                    async with asyncio.timeout(5):
                        await entry.pool.stop()  # reaps them and closes their pipes
                except BaseException:  # noqa: BLE001 - the loop is going away regardless
                    pass
            raise

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


def _stop_http_pool(loop, entry):
    """Stops a loop's HTTP pool from outside that loop: on the loop if it runs in
    another thread, else (gone, stopped, or blocked in this very call) by killing."""
    pool = entry.pool
    if not loop.is_closed() and loop.is_running() and asyncio._get_running_loop() is not loop:
        try:
            asyncio.run_coroutine_threadsafe(pool.stop(), loop).result(timeout=30)
            return
        except Exception:  # noqa: BLE001 - fall back to killing them here
            pass
    if pool.http is not None:
        pool.http.kill_now()


def _as_task(on_log):
    """A coroutine function on_log, made a plain callback that schedules it as a task."""
    tasks = set()

    def schedule(*line):
        task = asyncio.ensure_future(on_log(*line))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return schedule


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
