"""The pool: pre-started sandboxed Deno processes, one fresh process per evaluation,
and warm processes for HTTP vals (runtime/warm.py).

Each of pool_size slots runs a loop: start a process, offer it as ready, wait until it
has served its evaluation (or died), start the next one. So start-up cost is paid
before a request comes, nothing survives from one evaluation into the next, and a
process that crashes or hangs is simply replaced. Callers that find no ready process
wait in a bounded queue for a bounded time, then get RuntimeBusy.

Fair to tenants (whom an evaluation counts against, given as `tenant=`: any hashable,
or a config.Tenant with a group): one tenant holds at most max_processes_per_tenant
processes at once, and so do all the tenants of one group together; when callers wait,
a freed process goes to the tenants in turn (round-robin), each tenant's own callers in
order. So a flood of one user's evaluations waits behind its own cap while another
user's go through. Callers without a tenant share one turn and have no cap (the
platform gives every evaluation one).

A Pool lives on one asyncio event loop. runtime.engine runs one in a background thread
for callers on other loops or in sync code.
"""

import asyncio
import json
import logging
from collections import Counter, OrderedDict, deque

from runtime import firewall, sandbox
from runtime.config import PoolConfig
from runtime.exceptions import RuntimeBusy, RuntimeUnavailable
from runtime.http import Exchange, SlowAnswerWatch
from runtime.process import DenoProcess, StartupFailed
from runtime.warm import WarmPool

logger = logging.getLogger(__name__)

MAX_RESTART_DELAY_SECONDS = 30.0


class Pool:
    def __init__(self, config=None):
        self.config = config or PoolConfig()
        self._ready = asyncio.Queue()
        self._slots = []
        self._failing = {}  # slot number -> whether its last start failed
        self._processes = set()
        self._waiters = OrderedDict()  # tenant -> deque of futures, in round-robin order
        self._held = Counter()  # tenant, and tenant group -> evaluation processes it holds now
        self._closed = False
        self.denied_hosts = []
        self.firewall = None  # this pool's share of the sandbox uids' nftables table
        self.last_start_error = None
        self.processes_started = 0
        self.http = None  # the WarmPool, once started
        self.slow_answers = None  # the SlowAnswerWatch of its HTTP exchanges, once started

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc_info):
        await self.stop()

    async def start(self):
        sandbox.prepare_directories(self.config)
        # Found once, at start-up: a new interface address needs a pool restart.
        self.denied_hosts = sandbox.denied_hosts(self.config)
        # Before any process starts: a sandbox must never run outside the firewall.
        self.firewall = firewall.SandboxFirewall(self.config)
        await asyncio.to_thread(self.firewall.open)
        logger.info("Starting %d sandboxed Deno processes: %s", self.config.pool_size,
                    sandbox.describe_protections(self.config, self.firewall))
        if not sandbox.is_root():
            logger.warning("The runtime is not running as root: vals run as this user, without a thread cap "
                           "and without the sandbox uids' firewall.")
        elif not self.firewall.applied:
            logger.warning("The sandbox uids' firewall is NOT applied (%s): vals can reach this machine through "
                           "a SOCKS proxy on it. Install nftables and run with CAP_NET_ADMIN.", self.firewall.problem)
        for number in range(self.config.pool_size):
            self._failing[number] = False
            self._slots.append(asyncio.ensure_future(self._run_slot(number)))
        self.http = WarmPool(self.config, self.denied_hosts)
        self.slow_answers = SlowAnswerWatch(self.http.loop)

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
        if self.http is not None:
            await self.http.stop()
        for slot in self._slots:
            slot.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        await asyncio.gather(*(process.close() for process in list(self._processes)), return_exceptions=True)
        if self.firewall is not None:
            # Only now that every process of this pool has died. In this thread, not a
            # worker's: stop() also runs at interpreter exit, when no new worker may start.
            self.firewall.close()

    # --- Evaluating ----------------------------------------------------------

    async def evaluate(
        self,
        code=None,
        *,
        url=None,
        args=(),
        env=None,
        limits=None,
        on_log=None,
        on_call=None,
        mode="function",
        export="default",
        import_grant=None,
        library_worker=False,
        tenant=None,
    ):
        """Runs a val in a fresh sandboxed process and returns its Result.

        Give either code (TypeScript source) or url (a module to import). mode
        "function" calls the export named `export` with `args`; mode "script" only
        imports the module; mode "auto" calls the export if the module has one. env holds the evaluation's secrets. on_log(level, message,
        timestamp_ms) is called for each log line as it arrives, on this event loop.
        on_call(name, payload) (a coroutine function) answers the val's host calls.
        tenant (hashable, e.g. the principal's id) is whom it counts against: see above.
        """
        job = new_job(self.config, code, url, args, env, mode, export, import_grant, library_worker)
        limits = checked_limits(self.config, limits)
        process = await self._take_ready_process(tenant)
        try:
            return await process.evaluate(job, limits, on_log, on_call)
        finally:
            process.kill()  # its slot reaps it and starts the next one
            self._give_back(tenant)

    def http_endpoint(self, key, **kwargs):
        """The HTTP val `key` as this pool serves it, on this pool's loop. See HttpEndpoint."""
        return HttpEndpoint(self._on_its_loop, self.config, key, **kwargs)

    async def _on_its_loop(self):
        return self

    async def serve_http(self, key, *, scope, receive, send=None, send_all=None, on_log=None, on_call=None, **kwargs):
        """Serves one ASGI HTTP request with the val's warm process for `key`: see
        HttpEndpoint, which takes the other arguments, and HttpEndpoint.serve. Returns an
        HttpOutcome."""
        endpoint = self.http_endpoint(key, **kwargs)
        return await endpoint.serve(scope, receive, send, send_all=send_all, on_log=on_log, on_call=on_call)

    def new_exchange(self, endpoint, scope, receive, send_all, on_log, on_call):
        """One request to endpoint, to be served by this pool's warm processes (HttpEndpoint.serve)."""
        if self._closed or self.http is None:
            raise RuntimeUnavailable("runtime unavailable: the pool has been stopped")
        self.http.start()
        return Exchange(
            self.http, endpoint, scope=scope, receive=receive, send_all=send_all, on_log=on_log, on_call=on_call,
            slow_answers=self.slow_answers,
        )

    @property
    def tenant_cap(self):
        """How many evaluation processes one tenant may hold at once."""
        return self.config.processes_per_tenant

    def _capped(self, tenant):
        if tenant is None:
            return False
        if self._held[tenant] >= self.tenant_cap:
            return True
        group = _group_of(tenant)
        return group is not None and self._held[group] >= self.tenant_cap

    def _hold(self, tenant):
        self._held[tenant] += 1
        group = _group_of(tenant)
        if group is not None:
            self._held[group] += 1

    async def _take_ready_process(self, tenant=None):
        if self._closed:
            raise RuntimeUnavailable("runtime unavailable: the pool has been stopped")
        if self.ready_count == 0 and all(self._failing.values()):
            raise RuntimeUnavailable(f"runtime unavailable: Deno processes fail to start: {self.last_start_error}")
        if not self._capped(tenant):
            # Nobody who could take a ready process is waiting (_dispatch saw to that).
            process = self._ready_process()
            if process is not None:
                self._hold(tenant)
                return process
        queue = self._waiters.setdefault(tenant, deque())
        waiting = sum(1 for waiter in queue if not waiter.done())
        if waiting >= self.config.max_waiting:
            raise RuntimeBusy(f"runtime busy: {waiting} evaluations are already waiting for a process")
        waiter = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            async with asyncio.timeout(self.config.wait_timeout_seconds):
                return await waiter  # _dispatch counted it as held
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return waiter.result()  # it got one just as the time ran out
            if all(self._failing.values()):
                raise RuntimeUnavailable(
                    f"runtime unavailable: Deno processes fail to start: {self.last_start_error}"
                ) from None
            raise RuntimeBusy(
                f"runtime busy: no process became free within {self.config.wait_timeout_seconds:g} s"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # given a process just as it was cancelled
                self._ready.put_nowait(waiter.result())
                self._give_back(tenant)
            raise
        finally:
            if not waiter.done():
                waiter.cancel()  # _dispatch skips it

    def _ready_process(self):
        """A ready process, or None. One that died while idle is skipped; its slot replaces it."""
        while not self._ready.empty():
            process = self._ready.get_nowait()
            if process.still_running():
                return process
        return None

    def _give_back(self, tenant):
        group = _group_of(tenant)
        for holder in (tenant,) if group is None else (tenant, group):
            self._held[holder] -= 1
            if self._held[holder] <= 0:
                del self._held[holder]
        self._dispatch()

    def _dispatch(self):
        """Gives ready processes to waiting callers: tenants in turn, skipping those at
        their cap; within a tenant, first come first served."""
        while self._waiters and not self._ready.empty():
            for tenant, queue in list(self._waiters.items()):
                while queue and queue[0].done():
                    queue.popleft()  # it gave up
                if not queue:
                    del self._waiters[tenant]
                    continue
                if self._capped(tenant):
                    continue
                process = self._ready_process()
                if process is None:
                    return
                self._hold(tenant)
                queue.popleft().set_result(process)
                self._waiters.move_to_end(tenant)  # its turn is over
                break
            else:
                return  # everyone waiting is at their cap

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
                self._dispatch()
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


class HttpEndpoint:
    """An HTTP val as the runtime serves it: its key, job and limits, checked once, then
    any number of requests served with serve(). A caller serving many requests to one
    val keeps one (the gateway does while its lookup is fresh), so that a request costs
    only its own exchange. Made by Pool.http_endpoint and Engine.http_endpoint.

    key says which warm process may serve it (one val version run for one principal,
    e.g. ("val", val_id, version, principal_id)): requests with equal keys share a
    process, others never do. Give either code or url; env holds the val's secrets. A
    request body over max_body_bytes gets 413. When requests wait for a place, tenants
    (e.g. the principal's id) take turns.
    """

    def __init__(
        self, pool_for_this_loop, config, key, *, code=None, url=None, env=None, limits=None,
        max_body_bytes=10 * 1024 * 1024, export="default", import_grant=None, library_worker=False, tenant=None,
    ):
        hash(key)  # fails early on a key that can't be one
        self._pool_for_this_loop = pool_for_this_loop  # an async function: the running loop's Pool
        self.key = key
        self.limits = checked_limits(config, limits)
        self.max_body_bytes = max_body_bytes
        self.tenant = tenant

        def job():
            # Only needed when the key's process starts: most requests find it warm.
            return new_job(config, code, url, (), env, "http", export, import_grant, library_worker)

        self.job = job

    async def serve(self, scope, receive, send=None, *, send_all=None, on_log=None, on_call=None):
        """Serves one ASGI HTTP request with the val's warm process. Returns an HttpOutcome.

        scope, receive and send are the request's, on the running event loop
        (send_all(messages) may replace send, to pass several at once). on_log(level,
        message, timestamp_ms) is called on this loop for each line the request logs;
        on_call(name, payload), a coroutine function, answers its host calls."""
        if (send is None) == (send_all is None):
            raise ValueError("give either send or send_all")
        pool = await self._pool_for_this_loop()
        exchange = pool.new_exchange(self, scope, receive, send_all or _sender_of_many(send), on_log, on_call)
        return await exchange.serve()


def _group_of(tenant):
    """The key a tenant's group is counted under, or None. Apart from every tenant's own."""
    group = getattr(tenant, "group", None)
    return None if group is None else ("group", group)


def checked_limits(config, limits):
    limits = limits or config.default_limits
    if not 0 < limits.timeout_seconds <= config.max_timeout_seconds:
        raise ValueError(f"timeout_seconds must be between 0 and {config.max_timeout_seconds}")
    return limits


def new_job(config, code, url, args, env, mode, export, import_grant, library_worker):
    """What a process is told to run (protocol.encode_job's fields), checked."""
    if (code is None) == (url is None):
        raise ValueError("give either code or url")
    if mode not in ("function", "script", "auto", "http"):
        raise ValueError('mode must be "function", "script" or "auto"')
    env = dict(env or {})
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ValueError(f"invalid environment variable name: {name!r}")
        if name in sandbox.DENIED_ENV:
            # Refused here, with a reason: in the process, the harness couldn't set it.
            raise ValueError(f"{name} can't be one of a val's environment variables: Deno would take a proxy "
                             "from it, and the proxy variables are denied to vals")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"the value of {name} must be a string without NUL characters")
    args = list(args)
    json.dumps(args)  # fails early on arguments JSON can't carry
    return {
        "url": url, "code": code, "mode": mode, "export": export, "args": args, "env": env,
        **_imports(config, import_grant, library_worker),
    }


def _imports(config, import_grant, library_worker):
    """The job's import fields: whom its imports are for (see runtime/grants.py), and
    whether other users' vals may be loaded, in Restricted Library Mode's Worker."""
    library = None
    if config.library_host:
        library = {
            "host": config.library_host,
            "workerImportHosts": sandbox.library_import_hosts(config),
            "start": bool(library_worker),
        }
    return {"import_grant": import_grant, "library": library}


def _sender_of_many(send):
    async def send_all(messages):
        for message in messages:
            await send(message)

    return send_all
