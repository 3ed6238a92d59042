"""The warm pool's policy for HTTP vals: idle timeout, least recently used eviction,
request cap, memory recycling, per-key and total caps, spares. Each test runs its own
small pool on the test's event loop."""

import asyncio
import gc
import os
import re
import signal

from runtime import Limits, Pool
from runtime.http import Exchange
from runtime.process import is_gone
from runtime.warm import _wait_until_dead
from tests.runtime.helpers import runtime_config
from tests.runtime.visitor import Visitor

COUNTER = "let count = 0; export default () => new Response(String(++count))"
SLOW = "export default async () => { await new Promise((r) => setTimeout(r, 800)); return new Response('done') }"


def http_pool(**changes):
    return Pool(runtime_config(pool_size=0, **changes))


async def serve(pool, key, code=COUNTER, visitor=None, **kwargs):
    visitor = visitor or Visitor()
    outcome = await pool.serve_http(
        key, code=code, scope=visitor.scope, receive=visitor.receive, send=visitor.send, **kwargs
    )
    return outcome, visitor


async def test_an_idle_process_is_retired_after_the_idle_timeout():
    async with http_pool(http_idle_seconds=0.3) as pool:
        first, _ = await serve(pool, "a")
        await asyncio.sleep(0.8)
        gone = not os.path.exists(f"/proc/{first.pid}")
        second, visitor = await serve(pool, "a")

    assert gone
    assert second.pid != first.pid and visitor.body == b"1"  # a fresh start


async def test_the_idle_timeout_counts_from_the_last_request_not_the_first():
    async with http_pool(http_idle_seconds=0.6) as pool:
        first, _ = await serve(pool, "a")
        await asyncio.sleep(0.4)
        await serve(pool, "a")  # idle again from here: 0.6 s more
        await asyncio.sleep(0.4)  # 0.8 s after the first request, 0.4 after the last
        third, third_visitor = await serve(pool, "a")
        await asyncio.sleep(1.0)
        fourth, fourth_visitor = await serve(pool, "a")

    assert third.pid == first.pid and third_visitor.body == b"3"
    assert fourth.pid != first.pid and fourth_visitor.body == b"1"


async def test_a_finished_request_leaves_nothing_behind_for_the_garbage_collector():
    # Requests finish in microseconds under load: whatever outlives one (a watch keeping
    # its exchange until a timer fires) piles up for the garbage collector to walk.
    def exchanges_alive():
        return [thing for thing in gc.get_objects() if isinstance(thing, Exchange)]

    async with http_pool() as pool:
        await serve(pool, "a")
        gc.collect()
        gc.disable()  # only reference counting frees things from here
        try:
            before = exchanges_alive()  # kept alive here, so no new one can take an old one's place
            outcome, visitor = await serve(pool, "a")
            left_behind = [exchange for exchange in exchanges_alive() if not any(exchange is old for old in before)]
        finally:
            gc.enable()

    assert visitor.body == b"2"
    assert left_behind == []


async def test_the_least_recently_used_idle_process_makes_room_for_a_new_key():
    async with http_pool(http_max_processes=2) as pool:
        a, _ = await serve(pool, "a")
        b, _ = await serve(pool, "b")
        await serve(pool, "a")  # now b is the least recently used
        await serve(pool, "c")
        a_again, a_visitor = await serve(pool, "a")
        b_again, b_visitor = await serve(pool, "b")

    assert a_again.pid == a.pid and a_visitor.body == b"3"
    assert b_again.pid != b.pid and b_visitor.body == b"1"


async def test_a_process_is_replaced_after_its_request_cap():
    async with http_pool(http_max_requests_per_process=3) as pool:
        outcomes = [await serve(pool, "a") for _ in range(4)]

    pids = [outcome.pid for outcome, _ in outcomes]
    assert pids[0] == pids[1] == pids[2] != pids[3]
    assert [visitor.body for _, visitor in outcomes] == [b"1", b"2", b"3", b"1"]


async def test_a_process_is_replaced_once_its_memory_passes_the_recycling_threshold():
    async with http_pool(http_recycle_rss_mb=1) as pool:  # every Deno is bigger than that
        first, _ = await serve(pool, "a")
        second, _ = await serve(pool, "a")

    assert first.pid != second.pid


async def test_a_process_over_the_memory_cap_is_killed_mid_request():
    val = "export default () => { const big = new Uint8Array(300 * 1024 * 1024).fill(1); return new Response(String(big[5])) }"
    async with http_pool(max_rss_mb=150) as pool:
        outcome, visitor = await serve(pool, "a", val)

    assert visitor.status == 502
    assert (outcome.status, outcome.kill_reason) == ("killed", "memory")


async def test_requests_over_the_per_key_cap_wait_briefly_then_get_503():
    async with http_pool(http_max_concurrent_per_key=2, http_wait_seconds=0.3) as pool:
        await serve(pool, "a", SLOW)  # loaded and warm
        results = await asyncio.gather(*(serve(pool, "a", SLOW) for _ in range(3)))

    statuses = sorted(visitor.status for _, visitor in results)
    assert statuses == [200, 200, 503]
    refused = next(visitor for _, visitor in results if visitor.status == 503)
    assert refused.headers("retry-after") == ["1"]


async def test_a_waiting_request_gets_the_place_that_frees_up():
    quick = "export default async () => { await new Promise((r) => setTimeout(r, 200)); return new Response('ok') }"
    async with http_pool(http_max_concurrent_per_key=1, http_wait_seconds=3) as pool:
        results = await asyncio.gather(*(serve(pool, "a", quick) for _ in range(2)))

    assert [visitor.status for _, visitor in results] == [200, 200]


async def test_when_every_warm_process_is_busy_a_new_key_gets_503():
    async with http_pool(http_max_processes=1, http_wait_seconds=0.3) as pool:
        busy = asyncio.ensure_future(serve(pool, "a", SLOW))
        await asyncio.sleep(0.2)
        refused, visitor = await serve(pool, "b")
        await busy

    assert visitor.status == 503
    assert refused.error["name"] == "RuntimeBusy"


async def the_spares_pid(pool):
    """The pid of the pool's spare process, once it has started one."""
    async with asyncio.timeout(10):
        while not pool.http._spares:
            await asyncio.sleep(0.02)
    return pool.http._spares[0][0].pid


async def test_a_new_keys_first_request_takes_a_spare_process():
    async with http_pool(http_spare_processes=1) as pool:
        await serve(pool, "a")
        spare_pid = await the_spares_pid(pool)
        outcome, _ = await serve(pool, "b")

    assert outcome.pid == spare_pid


async def test_a_spare_that_died_while_idle_is_not_handed_to_a_new_key():
    async with http_pool(http_spare_processes=1) as pool:
        await serve(pool, "a")
        spare_pid = await the_spares_pid(pool)
        os.kill(spare_pid, signal.SIGKILL)
        # Without yielding to the loop, so that asyncio hasn't reaped it yet: a zombie.
        _wait_until_dead(spare_pid, timeout=5)
        assert is_gone(spare_pid)
        outcome, visitor = await serve(pool, "b")

    assert (visitor.status, visitor.body) == (200, b"1")
    assert outcome.pid != spare_pid


async def test_warm_processes_run_the_same_sandboxed_command_as_evaluation_processes():
    async with Pool(runtime_config(pool_size=1)) as pool:
        await pool.wait_until_ready()
        evaluation_pid = next(process.pid for process in pool._ready._queue)
        outcome, _ = await serve(pool, "a")

        commands = [command_line(evaluation_pid), command_line(outcome.pid)]
        owners = [os.stat(f"/proc/{pid}").st_uid for pid in (evaluation_pid, outcome.pid)]

    # The same Deno flags; only each process's own control socket differs.
    assert commands[0] == commands[1]
    assert "--deny-net=" in " ".join(commands[0])
    if os.geteuid() == 0:
        assert owners[0] != owners[1] and min(owners) >= 64200  # a sandbox uid of its own each


def command_line(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        parts = file.read().decode().split("\0")
    return [re.sub(r"/p-[^/]+/control\.sock", "/<socket>", part) for part in parts]


async def test_stopping_the_pool_ends_the_requests_in_flight_at_once():
    hanging = "export default () => new Promise(() => {})"
    pool = http_pool()
    await pool.start()
    request = asyncio.ensure_future(serve(pool, "a", hanging, limits=Limits(timeout_seconds=30)))
    await asyncio.sleep(0.5)

    async with asyncio.timeout(5):
        await pool.stop()
        outcome, visitor = await request

    assert visitor.status == 502
    assert outcome.status == "killed"
