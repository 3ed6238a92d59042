"""Fair queueing in the pool: a tenant (the principal a val runs for) holds at most its
cap of evaluation processes, and callers waiting for a process or an HTTP place are
served round-robin across tenants, not first come first served. Each test runs its own
small pool on the test's loop."""

import asyncio
import time

from runtime import Pool, Tenant
from tests.runtime.helpers import runtime_config
from tests.runtime.visitor import Visitor


def sleeper(ms):
    """A val that sleeps, and says when it ran."""
    return f"export default async (tag) => {{ const start = Date.now(); await new Promise(r => setTimeout(r, {ms})); return [tag, start, Date.now()] }}"


async def test_a_flood_from_one_tenant_does_not_starve_another():
    async with Pool(runtime_config(pool_size=2, wait_timeout_seconds=30)) as pool:  # a tenant's cap: 1
        await pool.wait_until_ready()
        flood = [asyncio.ensure_future(pool.evaluate(sleeper(400), args=[f"a{n}"], tenant="alice")) for n in range(6)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        bob = await pool.evaluate("export default () => 'bob was served'", tenant="bob")
        bob_waited = time.monotonic() - started
        alice_done_by_then = sum(task.done() for task in flood)
        await asyncio.gather(*flood)

    assert bob.value == "bob was served"
    assert alice_done_by_then <= 1  # first come first served would have put bob behind all six
    assert bob_waited < 1.5


async def test_one_tenant_holds_no_more_processes_than_its_cap():
    async with Pool(runtime_config(pool_size=3, max_processes_per_tenant=2, wait_timeout_seconds=30)) as pool:
        await pool.wait_until_ready()
        results = await asyncio.gather(*(pool.evaluate(sleeper(300), args=[n], tenant="alice") for n in range(5)))

    intervals = [(start, end) for _, start, end in (result.value for result in results)]
    most_at_once = max(sum(1 for start, end in intervals if start <= moment < end) for moment, _ in intervals)
    assert most_at_once == 2  # never the third process, though it was free


async def test_the_tenants_of_one_group_share_one_cap():
    async with Pool(runtime_config(pool_size=3, max_processes_per_tenant=2, wait_timeout_seconds=30)) as pool:
        await pool.wait_until_ready()
        visitors = [Tenant(f"anonymous:10.0.0.{n}", "anonymous") for n in range(4)]
        results = await asyncio.gather(*(pool.evaluate(sleeper(300), args=[n], tenant=visitors[n]) for n in range(4)))

    intervals = [(start, end) for _, start, end in (result.value for result in results)]
    most_at_once = max(sum(1 for start, end in intervals if start <= moment < end) for moment, _ in intervals)
    assert most_at_once == 2  # four addresses, one share: never the third process


async def test_callers_without_a_tenant_are_not_capped():
    async with Pool(runtime_config(pool_size=2, wait_timeout_seconds=30)) as pool:
        await pool.wait_until_ready()
        results = await asyncio.gather(*(pool.evaluate(sleeper(400), args=[n]) for n in range(2)))

    (_, first_start, first_end), (_, second_start, second_end) = (result.value for result in results)
    assert second_start < first_end and first_start < second_end  # both at once


async def test_waiting_evaluations_are_served_round_robin_across_tenants():
    async with Pool(runtime_config(pool_size=1, wait_timeout_seconds=30)) as pool:
        await pool.wait_until_ready()
        finished = []

        async def run(tenant, tag):
            result = await pool.evaluate(sleeper(50), args=[tag], tenant=tenant)
            finished.append(result.value[0])

        tasks = []
        for tenant, tag in [("alice", "a1"), ("alice", "a2"), ("alice", "a3"), ("bob", "b1"), ("bob", "b2")]:
            tasks.append(asyncio.ensure_future(run(tenant, tag)))
            await asyncio.sleep(0.02)  # in this order
        await asyncio.gather(*tasks)

    assert finished == ["a1", "a2", "b1", "a3", "b2"]  # first come first served: a1 a2 a3 b1 b2


SLOW_HTTP = "export default async () => { await new Promise((r) => setTimeout(r, 150)); return new Response('done') }"


async def serve(pool, key, tenant, finished):
    visitor = Visitor()
    outcome = await pool.serve_http(
        key, code=SLOW_HTTP, scope=visitor.scope, receive=visitor.receive, send=visitor.send, tenant=tenant
    )
    finished.append((key, visitor.status))
    return outcome


async def test_http_requests_waiting_for_a_process_take_turns_by_tenant():
    config = runtime_config(pool_size=0, http_max_processes=1, http_max_concurrent_per_key=1, http_wait_seconds=30)
    async with Pool(config) as pool:
        finished = []
        tasks = []
        for key, tenant in [("a", "alice"), ("a", "alice"), ("a", "alice"), ("b", "bob"), ("b", "bob")]:
            tasks.append(asyncio.ensure_future(serve(pool, key, tenant, finished)))
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks)

    # One warm process in all: bob's val gets it in turn, instead of after all of alice's.
    assert finished == [("a", 200), ("a", 200), ("b", 200), ("a", 200), ("b", 200)]


async def test_a_thousand_requests_queued_on_one_val_do_not_slow_another_tenants_val():
    config = runtime_config(pool_size=0, http_max_concurrent_per_key=4, http_wait_seconds=1)
    async with Pool(config) as pool:
        finished = []
        await serve(pool, "b", "bob", finished)  # bob's val is warm
        flood = [asyncio.ensure_future(serve(pool, "a", "alice", finished)) for _ in range(1000)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await serve(pool, "b", "bob", finished)
        bob_took = time.monotonic() - started
        outcomes = await asyncio.gather(*flood)

    statuses = [status for key, status in finished if key == "a"]
    assert bob_took < 0.5  # his own 150 ms, not a place in alice's queue
    assert statuses.count(200) >= 4 and set(statuses) == {200, 503}  # the excess: a clean 503
    refused = [outcome for outcome in outcomes if outcome.http_status == 503]
    assert all(outcome.error["name"] == "RuntimeBusy" for outcome in refused)


def nice_of(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


async def test_an_evaluation_running_past_a_second_gets_a_lower_cpu_priority():
    async with Pool(runtime_config(pool_size=1)) as pool:
        await pool.wait_until_ready()
        pid = pool._ready._queue[0].pid
        busy = "export default () => { const end = Date.now() + 1600; while (Date.now() < end) {} return 'done' }"
        running = asyncio.ensure_future(pool.evaluate(busy, tenant="alice"))
        await asyncio.sleep(0.5)
        early = nice_of(pid)
        await asyncio.sleep(0.9)
        late = nice_of(pid)
        result = await running

    assert result.value == "done"
    assert (early, late) == (0, 10)
