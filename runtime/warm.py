"""Warm processes for HTTP vals: one per key (a val version and the principal it runs
for), kept alive between requests and shared by that key's concurrent requests.

Unlike an evaluation's process, a warm process lives on: the val's module is loaded
once, its globals persist from one request to the next, and requests run side by side.
It is started exactly like an evaluation's process (same command line, jail and
permissions), and only ever holds one key's code and secrets.

The policy, each figure a PoolConfig field:
- one key's process handles up to http_max_concurrent_per_key requests at once; more
  wait up to http_wait_seconds for a place, then get RuntimeBusy (the visitor a 503);
- a process is retired after http_idle_seconds without a request, after
  http_max_requests_per_process requests, once its memory passes http_recycle_rss_mb
  after a request, or once it has used 20 s of CPU time (see CPU_SECONDS_TO_RETIRE);
- at most http_max_processes warm processes live at once: a new key retires the least
  recently used idle one, and when none is idle, waits like above;
- http_spare_processes blank processes are kept started, so that a new key's first
  request doesn't wait for Deno to start.

Requests that wait for a place are served round-robin across tenants (the principal,
given to serve_http as `tenant=`), each key's in order of arrival. A freed place wakes
only a request that can use it: a thousand requests queued on one val cost nothing
until one of them can go.

Evaluations have their own processes (Pool's pool_size slots), so busy HTTP vals can't
take an evaluation's process and evaluations can't take HTTP places.
"""

import asyncio
import logging
import shutil
import time
from collections import OrderedDict, deque

from runtime import protocol, sandbox
from runtime.exceptions import RuntimeBusy, RuntimeUnavailable
from runtime.process import FRAME_OVERHEAD_BYTES, DenoProcess, StartupFailed, is_gone, read_cpu_seconds
from runtime.result import ERROR, KILLED, REASON_CRASHED, REASON_MEMORY, REASON_TIMEOUT

logger = logging.getLogger(__name__)

# jail.py caps each process's CPU time at max_timeout_seconds + 30 s (RLIMIT_CPU). A
# process retired once it has used 20 s can still run any request to its timeout.
CPU_SECONDS_TO_RETIRE = 20


class ProcessGone(Exception):
    """The warm process died before it had loaded the val."""


class WarmProcess:
    """One sandboxed Deno process serving one key's HTTP requests."""

    def __init__(self, key, config):
        self.key = key
        self.config = config
        self.process = None  # the DenoProcess, once started
        self.lease = None
        self.nonce = protocol.new_nonce()
        # Resolves to None once the val is loaded, or to the error that stopped it
        # loading; raises RuntimeUnavailable or ProcessGone if the process never got there.
        self.loaded = asyncio.get_running_loop().create_future()
        # Nobody may be waiting for it: don't warn about an exception never retrieved.
        self.loaded.add_done_callback(lambda future: future.cancelled() or future.exception())
        self.places_held = 0  # requests admitted and not yet finished
        self.requests_admitted = 0
        self.admitted = []  # their exchanges, oldest first
        self.exchanges = {}  # request id -> exchange, once its request was sent
        self.next_request_id = 1
        self.retiring = False
        self.kill_reason = None  # set when the host itself kills it
        self.rss = 0
        self.cpu_seconds = 0.0
        self.idle_timer = None  # armed while it is idle, or was since the timer was set
        self.idle_since = None  # on the loop's clock; None while it holds a request
        self._tasks = []
        self._outgoing = []  # encoded messages waiting for the next write
        self._write_scheduled = False

    @property
    def pid(self):
        return self.process.pid if self.process else None

    @property
    def alive(self):
        return self.process is not None and self.process.alive

    @property
    def idle(self):
        return self.places_held == 0

    @property
    def dying(self):
        """Killed or dead, though maybe not yet reaped: no new request may go to it."""
        return self.kill_reason is not None or (self.process is not None and not self.process.alive)

    # --- Talking to the guest ------------------------------------------------

    def attach(self, process, lease, job):
        """Takes over a started process and sends it the val's job."""
        self.process, self.lease = process, lease
        job = process.take_import_grant(job)
        process.send_raw_output_to(self)
        process.frames.max_bytes = self.config.default_limits.max_host_call_bytes + FRAME_OVERHEAD_BYTES
        self.send_encoded(
            protocol.encode_job(
                nonce=self.nonce,
                max_log_bytes=self.config.default_limits.max_log_bytes,
                max_host_call_bytes=self.config.default_limits.max_host_call_bytes,
                response_window_bytes=self.config.http_response_window_bytes,
                **job,
            )
        )
        self._reader = _FromTheGuest(self)
        self._reader.take_over(process)
        self._tasks = [asyncio.ensure_future(self._watch_memory())]

    def send(self, message):
        self.send_encoded(protocol.encode(message))

    def send_encoded(self, line):
        """Queues a message. What is queued during one turn of the event loop goes out
        in one write at its end: under load, several requests share a system call and
        a wake-up of the guest."""
        self._outgoing.append(line)
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self.write_now)

    def write_now(self):
        self._write_scheduled = False
        if not self._outgoing:
            return
        lines, self._outgoing = self._outgoing, []
        writer = self.process.writer
        if not writer.is_closing():
            writer.write(lines[0] if len(lines) == 1 else b"".join(lines))

    async def drain(self):
        self.write_now()
        try:
            await self.process.writer.drain()
        except ConnectionError:
            pass  # it died: the exchange hears about it from the exit watch

    def allow_frames_of(self, size):
        self.process.frames.max_bytes = max(self.process.frames.max_bytes, size + FRAME_OVERHEAD_BYTES)

    def received(self, lines):
        """Messages from the guest, as they arrive (see _FromTheGuest)."""
        nonce, parse, dispatch = self.nonce, protocol.parse_message, self._dispatch
        for line in lines:
            message = parse(line, nonce)
            if message is not None:
                dispatch(message)

    def received_too_much(self):
        # Only a val writing to the socket itself can do this, and the stream can't be
        # resynchronised: end the process.
        logger.warning("A warm HTTP process sent an oversized message and was killed")
        self.process.kill()

    def _dispatch(self, message):
        kind = message["type"]
        if kind == "loaded":
            if not self.loaded.done():
                self.loaded.set_result(None if message["ok"] else protocol.decode_error(message["error"]))
            return
        request = message.get("request")
        exchange = self.exchanges.get(request)
        if kind in ("log", "logs_truncated"):
            if request is None:
                exchange = self._stray_log_owner()
            if exchange is None:
                return  # its request is over: nobody is left to read it
            if kind == "log":
                exchange.logs.add(message["level"], message["message"], float(message["ts"]))
            else:
                exchange.logs.truncate()
        elif kind == "call":
            if exchange is None:
                reason = "the request has ended" if request is not None else "no request is being handled"
                self.send({"type": "call_result", "id": message["id"], "ok": False,
                           "error": f"host call refused: {reason}"})
            else:
                exchange.host_call(message)
        elif exchange is not None:
            exchange.deliver(("guest", message))

    def _stray_log_owner(self):
        """Who gets a line logged outside any request (the module's top level, a bare
        timer, raw stdout): the request admitted last that is still in flight."""
        return self.admitted[-1] if self.admitted else None

    @property
    def full(self):
        """Whether raw output has nowhere to go (DenoProcess.send_raw_output_to): then it
        isn't even split into lines."""
        owner = self._stray_log_owner()
        return owner is None or owner.logs.full

    def add(self, level, message, timestamp_ms):
        """Raw stdout and stderr lines (DenoProcess.send_raw_output_to)."""
        owner = self._stray_log_owner()
        if owner is not None:
            owner.logs.add(level, message, timestamp_ms)

    # --- Health --------------------------------------------------------------

    async def _watch_memory(self):
        """Polls memory (and now and then CPU time): kills it over max_rss_mb, and keeps
        the figures worn_out() reads, so that no request waits for /proc."""
        cap = self.config.max_rss_mb * 1024 * 1024
        polls = 0
        while self.alive:
            rss = self.process.poll_status()
            if rss is not None:
                self.rss = rss
                if rss > cap:
                    self.kill(REASON_MEMORY)
                    return
            if polls % 20 == 0:
                self.cpu_seconds = read_cpu_seconds(self.pid) or self.cpu_seconds
            polls += 1
            # Idle, it runs no request; only the val's own timers could still allocate.
            await asyncio.sleep(self.config.rss_poll_seconds * (1 if self.places_held else 10))

    def worn_out(self):
        """Whether it should serve no more requests: too many served, too big, too much CPU."""
        return (
            self.requests_admitted >= self.config.http_max_requests_per_process
            or self.rss > self.config.http_recycle_rss_mb * 1024 * 1024
            or self.cpu_seconds > CPU_SECONDS_TO_RETIRE
        )

    def kill(self, reason):
        """Kills it at once; every exchange in flight hears of it, with this reason."""
        if self.kill_reason is None:
            self.kill_reason = reason
        if self.process is not None:
            self.process.kill()

    def exit_outcome(self):
        """(status, kill_reason, error) for the requests a dead process left unfinished."""
        peak = (self.process.peak_rss if self.process is not None else 0) or None  # poll_status() keeps it
        if self.kill_reason == REASON_MEMORY:
            return KILLED, REASON_MEMORY, {
                "name": "OutOfMemoryError",
                "message": f"out of memory: the val's process used more than {self.config.max_rss_mb} MB",
                "stack": "",
            }
        if self.kill_reason == REASON_TIMEOUT:
            return KILLED, REASON_TIMEOUT, {
                "name": "TimeoutError",
                "message": "the val's process was stopped: a request ran past its timeout and did not let go",
                "stack": "",
            }
        if self.kill_reason is not None:
            return KILLED, self.kill_reason, {"name": "Error", "message": "the runtime was shut down", "stack": ""}
        crash = self.process.crash_result(peak, unfinished="finishing the request")
        return ERROR, REASON_CRASHED, crash.error

    async def watch_exit(self):
        """Returns once the process has died and every exchange in flight knows."""
        await asyncio.shield(self.process.exit_task)
        try:
            # What it sent just before dying (the end of a response, log lines) still counts.
            async with asyncio.timeout(1):
                await asyncio.shield(self._reader.closed)
        except TimeoutError:
            pass
        if not self.loaded.done():
            self.loaded.set_exception(ProcessGone())
        for exchange in list(self.exchanges.values()):
            exchange.deliver(("exited",))

    async def close(self):
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        if not self.loaded.done():
            self.loaded.set_exception(RuntimeUnavailable("runtime unavailable: the pool has been stopped"))
        for task in self._tasks:
            task.cancel()
        if self.process is not None:
            await self.process.close()
        if self.lease is not None:
            self.lease.release()
            self.lease = None


class _Waiter:
    __slots__ = ("key", "job", "exchange", "admitted")

    def __init__(self, key, job, exchange, admitted):
        self.key, self.job, self.exchange, self.admitted = key, job, exchange, admitted


class _FromTheGuest(asyncio.Protocol):
    """A warm process's socket, read as data arrives: each message is dispatched in the
    callback that received it. (A StreamReader read by a task costs a wake-up of that
    task for every read, and HTTP makes many small ones.) Lines over the frame cap
    (process.frames.max_bytes) end the process, as LineReader would."""

    def __init__(self, warm):
        self.warm = warm
        self.buffer = bytearray()
        self.closed = asyncio.get_running_loop().create_future()
        self._stream_protocol = None
        self._frames = None

    def take_over(self, process):
        transport = process.writer.transport
        self._stream_protocol = transport.get_protocol()  # StreamWriter.drain() still asks it
        self._frames = process.frames
        self.buffer += self._frames.take_buffered()  # nothing, by the protocol; kept anyway
        transport.set_protocol(self)
        if self.buffer:
            self.data_received(b"")

    def data_received(self, data):
        buffer = self.buffer
        buffer += data
        end = buffer.rfind(b"\n")
        if end < 0:
            if len(buffer) > self._frames.max_bytes:
                self._too_much()
            return
        lines = buffer[:end].split(b"\n")
        del buffer[: end + 1]
        limit = self._frames.max_bytes
        if len(buffer) > limit or any(len(line) > limit for line in lines):
            self._too_much()
            return
        self.warm.received([bytes(line) for line in lines])

    def _too_much(self):
        self.buffer.clear()
        self.warm.received_too_much()

    def eof_received(self):
        return False  # close the transport

    def connection_lost(self, exc):
        if self.buffer:
            lines, self.buffer = [bytes(self.buffer)], bytearray()
            self.warm.received(lines)
        if not self.closed.done():
            self.closed.set_result(None)
        self._stream_protocol.connection_lost(exc)

    def pause_writing(self):
        self._stream_protocol.pause_writing()

    def resume_writing(self):
        self._stream_protocol.resume_writing()


class WarmPool:
    def __init__(self, config, denied_hosts):
        self.loop = asyncio.get_running_loop()  # the one it serves on
        self.config = config
        self.denied_hosts = denied_hosts
        self._by_key = OrderedDict()  # key -> WarmProcess taking requests, least recently used first
        self._retiring = set()  # taking no more requests, finishing the ones they have
        self._everyone = set()  # every WarmProcess not yet closed, to close them all at stop()
        self._spares = []  # (DenoProcess, UidLease), started, with no job yet
        self._processes = {}  # DenoProcess -> UidLease: every one started and not yet closed
        self._spares_starting = 0
        self._waiters = OrderedDict()  # tenant -> {key -> deque of _Waiter}, in round-robin order
        self._dispatching = False
        self._dispatch_again = False
        self._background = set()
        self._closed = False
        self.started = False

    def _live_count(self):
        return len(self._by_key) + len(self._retiring)

    # --- Places --------------------------------------------------------------

    async def admit(self, key, job, exchange, tenant=None):
        """A warm process for key, with a place held for exchange. Start it if needed.

        Raises RuntimeBusy when no place frees up within http_wait_seconds.
        """
        if self._closed:
            raise RuntimeUnavailable("runtime unavailable: the pool has been stopped")
        if not self._waiters or self._has_a_place(key):
            warm = self._try_to_admit(key, job, exchange)
            if warm is not None:
                return warm
        waiter = _Waiter(key, job, exchange, asyncio.get_running_loop().create_future())
        self._waiters.setdefault(tenant, OrderedDict()).setdefault(key, deque()).append(waiter)
        self._dispatch()
        try:
            async with asyncio.timeout(self.config.http_wait_seconds):
                return await waiter.admitted
        except TimeoutError:
            if waiter.admitted.done() and not waiter.admitted.cancelled():
                return waiter.admitted.result()
            if self._closed:
                raise RuntimeUnavailable("runtime unavailable: the pool has been stopped") from None
            if key in self._by_key:
                raise RuntimeBusy(
                    f"runtime busy: this val is already handling {self.config.http_max_concurrent_per_key} requests"
                ) from None
            raise RuntimeBusy(
                f"runtime busy: all {self.config.http_max_processes} warm processes for HTTP vals are busy"
            ) from None
        except BaseException:
            admitted = waiter.admitted
            if admitted.done() and not admitted.cancelled() and admitted.exception() is None:
                self.release(admitted.result(), exchange)  # admitted just as it was cancelled
            raise
        finally:
            if not waiter.admitted.done():
                waiter.admitted.cancel()  # _dispatch drops it

    def _has_a_place(self, key):
        warm = self._by_key.get(key)
        return warm is not None and not warm.dying and warm.places_held < self.config.http_max_concurrent_per_key

    def _try_to_admit(self, key, job, exchange):
        """The key's warm process with a place held for exchange (started if need be and
        there is room), or None."""
        warm = self._by_key.get(key)
        if warm is not None and warm.dying:
            self.retire(warm)
            warm = None
        if warm is None and (self._live_count() < self.config.http_max_processes or self._retire_an_idle_one()):
            warm = self._start_for(key, job)
        if warm is not None and warm.places_held < self.config.http_max_concurrent_per_key:
            self._hold_place(warm, exchange)
            return warm
        return None

    def _dispatch(self):
        """Admits waiting requests while there is room: tenants in turn, one request per
        turn; within a tenant, the first waiting request of each of its keys."""
        if self._dispatching:
            self._dispatch_again = True  # (retiring a process on the way calls back here)
            return
        self._dispatching = True
        try:
            again = True
            while again and self._waiters:
                self._dispatch_again = False
                again = self._admit_one_turn() or self._dispatch_again
        finally:
            self._dispatching = False

    def _admit_one_turn(self):
        """Admits the first request it can, taking tenants in turn. Whether it did."""
        for tenant, keys in list(self._waiters.items()):
            for key, queue in list(keys.items()):
                while queue and queue[0].admitted.done():
                    queue.popleft()  # it gave up
                if not queue:
                    del keys[key]
                    continue
                if self._closed:
                    return False
                waiter = queue[0]
                try:
                    warm = self._try_to_admit(key, waiter.job, waiter.exchange)
                except Exception as error:  # noqa: BLE001 - its job was bad: that request fails
                    queue.popleft().admitted.set_exception(error)
                    return True
                if warm is None:
                    continue
                queue.popleft().admitted.set_result(warm)
                if not queue:
                    del keys[key]
                if keys:
                    self._waiters.move_to_end(tenant)  # its turn is over
                else:
                    del self._waiters[tenant]
                return True
            if not keys and tenant in self._waiters:
                del self._waiters[tenant]
        return False

    def _hold_place(self, warm, exchange):
        # An armed idle timer is left alone: when it fires, it finds the process busy
        # or idle too briefly (under load, arming and cancelling one per request cost more).
        warm.idle_since = None
        warm.places_held += 1
        warm.requests_admitted += 1
        warm.admitted.append(exchange)
        self._by_key.move_to_end(warm.key)
        if warm.requests_admitted >= self.config.http_max_requests_per_process:
            self.retire(warm)  # this was its last request: the next one starts afresh

    def release(self, warm, exchange):
        """The exchange is over: frees its place, and retires the process if it's due."""
        warm.places_held -= 1
        warm.admitted.remove(exchange)
        warm.exchanges.pop(exchange.request_id, None)
        if not warm.retiring and warm.worn_out() and warm.alive and warm.loaded.done():
            self.retire(warm)  # which closes it at once if it is idle
        elif warm.idle:
            if warm.retiring:
                self._close_soon(warm)
            elif self._by_key.get(warm.key) is warm:
                warm.idle_since = self.loop.time()
                if warm.idle_timer is None:
                    warm.idle_timer = self.loop.call_at(
                        warm.idle_since + self.config.http_idle_seconds, self._retire_when_idle_long_enough, warm
                    )
        self._notify()

    def _notify(self):
        """Something changed (a place freed, a process gone): admit who can go now."""
        if self._waiters:
            self._dispatch()

    # --- Retiring ------------------------------------------------------------

    def _retire_when_idle_long_enough(self, warm):
        """The idle timer: retires the process once it has been idle http_idle_seconds,
        or checks again when that would be."""
        warm.idle_timer = None
        if not warm.idle or warm.idle_since is None or self._by_key.get(warm.key) is not warm:
            return  # busy (its next release arms the timer again), retiring or gone
        retire_at = warm.idle_since + self.config.http_idle_seconds
        if self.loop.time() >= retire_at:
            self.retire(warm)
        else:
            warm.idle_timer = self.loop.call_at(retire_at, self._retire_when_idle_long_enough, warm)

    def _retire_an_idle_one(self):
        """Retires the least recently used idle process, if there is one."""
        for warm in self._by_key.values():
            if warm.idle:
                self.retire(warm)
                return True
        return False

    def retire(self, warm):
        """Takes no more requests for it; it is closed once its requests are finished."""
        warm.retiring = True
        if self._by_key.get(warm.key) is warm:
            del self._by_key[warm.key]
        if warm.idle:
            self._close_soon(warm)
        else:
            self._retiring.add(warm)
        self._notify()

    def _close_soon(self, warm):
        self._retiring.discard(warm)
        if self._by_key.get(warm.key) is warm:
            del self._by_key[warm.key]
        self._in_background(self._close(warm))

    async def _close(self, warm):
        await warm.close()
        self._everyone.discard(warm)
        self._processes.pop(warm.process, None)

    async def _discard(self, process, lease):
        """Closes a process that serves no key (a spare, or one that never got its job)."""
        await process.close()
        lease.release()
        self._processes.pop(process, None)

    def _in_background(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- Starting ------------------------------------------------------------

    def _start_for(self, key, job):
        """job: a function returning the job (it may raise, before anything starts)."""
        job = job()
        warm = WarmProcess(key, self.config)
        self._by_key[key] = warm
        self._everyone.add(warm)
        self._in_background(self._bring_up(warm, job))
        return warm

    async def _bring_up(self, warm, job):
        try:
            process, lease = await self._take_spare() or await self._spawn()
        except (StartupFailed, OSError, RuntimeError) as error:
            logger.warning("A warm process for an HTTP val failed to start: %s", error)
            if not warm.loaded.done():
                warm.loaded.set_exception(RuntimeUnavailable(f"runtime unavailable: Deno failed to start: {error}"))
            self.retire(warm)
            return
        if warm.retiring:  # the pool stopped, or it was evicted while starting
            await self._discard(process, lease)
            return
        warm.attach(process, lease, job)
        self._refill_spares()
        await warm.watch_exit()
        # It died. Its requests have heard; nothing more goes to it.
        warm.retiring = True
        if self._by_key.get(warm.key) is warm:
            del self._by_key[warm.key]
        self._retiring.discard(warm)
        await self._close(warm)
        self._notify()

    async def _spawn(self):
        lease = sandbox.UidLease(self.config)
        process = DenoProcess(self.config, self.denied_hosts, lease.uid)
        self._processes[process] = lease
        try:
            await process.start()
        except BaseException:
            await self._discard(process, lease)
            raise
        return process, lease

    async def _take_spare(self):
        while self._spares:
            process, lease = self._spares.pop(0)
            if process.still_running():  # asyncio may not have heard yet of a spare that died idle
                return process, lease
            await self._discard(process, lease)
        return None

    def _refill_spares(self):
        missing = self.config.http_spare_processes - len(self._spares) - self._spares_starting
        for _ in range(max(missing, 0)):
            self._spares_starting += 1
            self._in_background(self._start_spare())

    async def _start_spare(self):
        try:
            spare = await self._spawn()
        except (StartupFailed, OSError, RuntimeError) as error:
            # Not retried here: the next request that needs a process tries again.
            logger.warning("A spare process for HTTP vals failed to start: %s", error)
            return
        finally:
            self._spares_starting -= 1
        if self._closed:
            await self._discard(*spare)
        else:
            self._spares.append(spare)

    def start(self):
        """Starts the spare processes, at the first call (the pool calls this for each request)."""
        if self.started:
            return
        self.started = True
        self._refill_spares()

    def kill_now(self):
        """Kills every process at once, without the event loop: for a loop that is going
        away (or gone) and for shutdown at exit. Each uid goes back only once its process
        is dead. stop() may still follow, to reap and close what is left."""
        self._closed = True
        for warm in list(self._everyone):
            warm.retiring = True
            if warm.kill_reason is None:
                warm.kill_reason = "stopped"
        victims = list(self._processes.items())
        for process, _ in victims:
            process.kill()
        for process, lease in victims:
            _wait_until_dead(process.pid)
            lease.release()
            shutil.rmtree(process.dir, ignore_errors=True)

    def _refuse_the_waiting(self):
        for keys in self._waiters.values():
            for queue in keys.values():
                for waiter in queue:
                    if not waiter.admitted.done():
                        waiter.admitted.set_exception(
                            RuntimeUnavailable("runtime unavailable: the pool has been stopped")
                        )
        self._waiters.clear()

    async def stop(self):
        self._closed = True
        self._refuse_the_waiting()
        everything = list(self._everyone)
        self._by_key.clear()
        self._retiring.clear()
        for warm in everything:
            warm.retiring = True
            warm.kill("stopped")
            for exchange in list(warm.exchanges.values()):
                exchange.deliver(("exited",))
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(warm.close() for warm in everything), return_exceptions=True)
        await asyncio.gather(*list(self._background), return_exceptions=True)
        for process, lease in self._spares:
            await self._discard(process, lease)
        self._spares.clear()
        # Any left, such as one whose start was cut short when the pool stopped.
        await asyncio.gather(*(self._discard(*item) for item in list(self._processes.items())), return_exceptions=True)
        self._notify()


def _wait_until_dead(pid, timeout=2.0):
    """Until the SIGKILLed process `pid` is gone or a zombie (its threads are gone)."""
    deadline = time.monotonic() + timeout
    while pid is not None and time.monotonic() < deadline and not is_gone(pid):
        time.sleep(0.005)
