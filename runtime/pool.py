"""The pool: pre-started sandboxed Deno processes, one fresh process per evaluation.

Each of pool_size slots runs a loop: start a process, offer it as ready, wait until it
has served its evaluation (or died), start the next one. So start-up cost is paid
before a request comes, nothing survives from one evaluation into the next, and a
process that crashes or hangs is simply replaced. Callers that find no ready process
wait in a bounded queue for a bounded time, then get RuntimeBusy.

A Pool lives on one asyncio event loop. runtime.engine runs one in a background thread
for callers on other loops or in sync code.
"""

import asyncio
import json
import logging
import time

from runtime import sandbox
from runtime.config import PoolConfig
from runtime.process import DenoProcess, StartupFailed

logger = logging.getLogger(__name__)

MAX_RESTART_DELAY_SECONDS = 30.0


class RuntimeBusy(Exception):
    """Every process is busy and the wait queue is full, or the wait took too long."""


class RuntimeUnavailable(Exception):
    """The pool can't start Deno processes at all (or has been stopped)."""


class Pool:
    def __init__(self, config=None):
        self.config = config or PoolConfig()
        self._ready = asyncio.Queue()
        self._slots = []
        self._failing = {}  # slot number -> whether its last start failed
        self._processes = set()
        self._waiting = 0
        self._closed = False
        self.denied_hosts = []
        self.last_start_error = None
        self.processes_started = 0

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc_info):
        await self.stop()

    async def start(self):
        sandbox.prepare_directories(self.config)
        # Found once, at start-up: a new interface address needs a pool restart.
        self.denied_hosts = sandbox.denied_hosts(self.config)
        logger.info("Starting %d sandboxed Deno processes: %s", self.config.pool_size,
                    sandbox.describe_protections(self.config))
        if not sandbox.is_root():
            logger.warning("The runtime is not running as root: vals run as this user, without a thread cap.")
        for number in range(self.config.pool_size):
            self._failing[number] = False
            self._slots.append(asyncio.ensure_future(self._run_slot(number)))

    async def wait_until_ready(self, count=None, timeout=60.0):
        """Waits until `count` processes (default: all) are ready. For tests and benchmarks."""
        count = self.config.pool_size if count is None else count
        async with asyncio.timeout(timeout):
            while self.ready_count < count:
                await asyncio.sleep(0.01)

    @property
    def ready_count(self):
        return sum(1 for process in self._ready._queue if process.alive)

    async def stop(self):
        self._closed = True
        for slot in self._slots:
            slot.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        await asyncio.gather(*(process.close() for process in list(self._processes)), return_exceptions=True)

    # --- Evaluating ----------------------------------------------------------

    async def evaluate(
        self, code=None, *, url=None, args=(), env=None, limits=None, on_log=None, mode="function", export="default"
    ):
        """Runs a val in a fresh sandboxed process and returns its Result.

        Give either code (TypeScript source) or url (a module to import). mode
        "function" calls the export named `export` with `args`; mode "script" only
        imports the module. env holds the evaluation's secrets. on_log(level, message,
        timestamp_ms) is called for each log line as it arrives, on this event loop.
        """
        job = self._job(code, url, args, env, mode, export)
        limits = limits or self.config.default_limits
        if not 0 < limits.timeout_seconds <= self.config.max_timeout_seconds:
            raise ValueError(f"timeout_seconds must be between 0 and {self.config.max_timeout_seconds}")
        process = await self._take_ready_process()
        try:
            return await process.evaluate(job, limits, on_log)
        finally:
            process.kill()  # its slot reaps it and starts the next one

    @staticmethod
    def _job(code, url, args, env, mode, export):
        if (code is None) == (url is None):
            raise ValueError("give either code or url")
        if mode not in ("function", "script"):
            raise ValueError('mode must be "function" or "script"')
        env = dict(env or {})
        for name, value in env.items():
            if not isinstance(name, str) or not name or "=" in name or "\0" in name:
                raise ValueError(f"invalid environment variable name: {name!r}")
            if not isinstance(value, str) or "\0" in value:
                raise ValueError(f"the value of {name} must be a string without NUL characters")
        args = list(args)
        json.dumps(args)  # fails early on arguments JSON can't carry
        return {"url": url, "code": code, "mode": mode, "export": export, "args": args, "env": env}

    async def _take_ready_process(self):
        if self._closed:
            raise RuntimeUnavailable("runtime unavailable: the pool has been stopped")
        if self.ready_count == 0 and all(self._failing.values()):
            raise RuntimeUnavailable(f"runtime unavailable: Deno processes fail to start: {self.last_start_error}")
        if self._waiting >= self.config.max_waiting:
            raise RuntimeBusy(f"runtime busy: {self._waiting} evaluations are already waiting for a process")
        self._waiting += 1
        try:
            deadline = time.monotonic() + self.config.wait_timeout_seconds
            while True:
                remaining = deadline - time.monotonic()
                try:
                    process = await asyncio.wait_for(self._ready.get(), max(remaining, 0))
                except TimeoutError:
                    if all(self._failing.values()):
                        raise RuntimeUnavailable(
                            f"runtime unavailable: Deno processes fail to start: {self.last_start_error}"
                        ) from None
                    raise RuntimeBusy(
                        f"runtime busy: no process became free within {self.config.wait_timeout_seconds:g} s"
                    ) from None
                if process.alive:  # one that died while idle is skipped; its slot replaces it
                    return process
        finally:
            self._waiting -= 1

    # --- Slots ---------------------------------------------------------------

    async def _run_slot(self, number):
        lease = sandbox.UidLease(self.config)
        delay = 0.0
        process = None
        try:
            while not self._closed:
                process = DenoProcess(self.config, self.denied_hosts, lease.uid)
                self._processes.add(process)
                try:
                    await process.start()
                except (StartupFailed, OSError) as error:
                    await process.close()
                    self._processes.discard(process)
                    self._failing[number] = True
                    self.last_start_error = str(error)
                    # Back off, so a Deno that can't start doesn't make the pool spin.
                    delay = min(max(delay * 2, 0.5), MAX_RESTART_DELAY_SECONDS)
                    logger.warning("Deno process failed to start (retrying in %.1f s): %s", delay, error)
                    await asyncio.sleep(delay)
                    continue
                delay = 0.0
                self._failing[number] = False
                self.processes_started += 1
                self._ready.put_nowait(process)
                # Until it has served an evaluation and been killed, or died idle.
                await asyncio.shield(process.exit_task)
                await process.close()
                self._processes.discard(process)
        except asyncio.CancelledError:
            pass
        finally:
            if process is not None:
                await process.close()  # before its uid can go to another slot
            lease.release()
