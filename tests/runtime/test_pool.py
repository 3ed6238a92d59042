"""The pool: a fresh process per evaluation, replaced when it dies, a bounded queue,
and a clear error when Deno can't start at all."""

import asyncio
import os
import shutil
import signal
import tempfile
import time

import pytest

from runtime import Limits, Pool, RuntimeBusy, RuntimeUnavailable
from tests.runtime.helpers import assert_still_works, needs_root, runtime_config, start_engine


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


async def on_engine_loop(engine, coroutine):
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, engine._loop))


async def wait_until_gone(pid, timeout=2):
    async with asyncio.timeout(timeout):
        while os.path.exists(f"/proc/{pid}"):
            await asyncio.sleep(0.01)


def ready_pids(pool):
    return [process.pid for process in pool._ready._queue if process.alive]


async def test_each_evaluation_gets_a_fresh_process(engine):
    val = "export default () => { (globalThis as any).count = ((globalThis as any).count ?? 0) + 1; return (globalThis as any).count }"

    results = [await engine.evaluate(val) for _ in range(3)]

    assert [result.value for result in results] == [1, 1, 1]


async def test_the_process_is_gone_after_its_evaluation(engine):
    await engine.pool.wait_until_ready()
    pids_before = set(ready_pids(engine.pool))

    await engine.evaluate("export default () => 1")

    await asyncio.sleep(0.2)
    gone = [pid for pid in pids_before if not os.path.exists(f"/proc/{pid}")]
    assert len(gone) == 1


async def test_it_replaces_a_process_that_dies_while_idle(engine):
    await engine.pool.wait_until_ready()
    pids = ready_pids(engine.pool)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        await wait_until_gone(pid)

    await assert_still_works(engine)


async def test_it_replaces_a_process_that_exits_during_an_evaluation(engine):
    result = await engine.evaluate("export default () => Deno.exit(3)")

    assert result.status == "error"
    assert result.kill_reason == "crashed"
    assert "exited with code 3" in result.error["message"]
    await assert_still_works(engine)


async def test_a_val_that_traps_sigterm_is_still_killed(engine):
    started = time.monotonic()

    result = await engine.evaluate(
        "export default () => { Deno.addSignalListener('SIGTERM', () => {}); while (true) {} }",
        limits=Limits(timeout_seconds=1),
    )

    assert result.status == "timeout"
    assert time.monotonic() - started < 3
    await assert_still_works(engine)


async def test_peak_memory_is_recorded(engine):
    result = await engine.evaluate("export default () => 1")

    assert result.status == "success", result
    assert result.peak_memory_bytes is not None, result
    assert 10_000_000 < result.peak_memory_bytes < 200_000_000


async def test_each_process_runs_in_an_empty_directory_removed_afterwards(engine):
    await engine.pool.wait_until_ready()
    process = next(process for process in engine.pool._ready._queue if process.alive)
    cwd = os.readlink(f"/proc/{process.pid}/cwd")

    assert os.listdir(cwd) == []
    await on_engine_loop(engine, process.close())
    assert not os.path.exists(process.dir)


@needs_root
async def test_processes_run_as_unprivileged_uids_of_their_own(engine):
    await engine.pool.wait_until_ready()
    uids = []
    for pid in ready_pids(engine.pool):
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        uids.append(int(fields["Uid"].split()[0]))
        assert fields["NoNewPrivs"].strip() == "1"
        assert fields["Seccomp"].strip() == "2"  # a filter is installed

    assert len(set(uids)) == len(uids) == 2
    assert all(uid >= 64200 for uid in uids)


async def test_callers_beyond_the_wait_queue_are_refused_at_once():
    async with Pool(runtime_config(pool_size=1, max_waiting=1, wait_timeout_seconds=5)) as pool:
        await pool.wait_until_ready()
        slow = "export default () => new Promise(r => setTimeout(r, 1500))"
        running = asyncio.ensure_future(pool.evaluate(slow))
        await asyncio.sleep(0.2)
        waiting = asyncio.ensure_future(pool.evaluate("export default () => 'waited'"))
        await asyncio.sleep(0.1)

        with pytest.raises(RuntimeBusy, match="runtime busy: 1 evaluations are already waiting"):
            await pool.evaluate("export default () => 1")

        assert (await running).status == "success"
        assert (await waiting).value == "waited"


async def test_a_waiting_caller_gets_runtime_busy_after_the_wait_timeout():
    async with Pool(runtime_config(pool_size=1, wait_timeout_seconds=0.3)) as pool:
        await pool.wait_until_ready()
        running = asyncio.ensure_future(pool.evaluate("export default () => new Promise(r => setTimeout(r, 1500))"))
        await asyncio.sleep(0.2)
        started = time.monotonic()

        with pytest.raises(RuntimeBusy, match="no process became free within 0.3 s"):
            await pool.evaluate("export default () => 1")

        assert time.monotonic() - started < 1
        await running


async def test_it_backs_off_and_reports_when_deno_cannot_start():
    async with Pool(runtime_config(pool_size=2, deno_path="/bin/false")) as pool:
        await asyncio.sleep(1.2)

        with pytest.raises(RuntimeUnavailable, match="Deno processes fail to start: deno exited with code 1"):
            await pool.evaluate("export default () => 1")

        # Attempts at 0, 0.5 and 1.5 s per slot at most: it does not spin.
        assert pool.processes_started == 0
        assert pool.last_start_error


@pytest.fixture
def hanging_deno():
    """A stand-in for a Deno that hangs at start-up, runnable by the sandbox uids."""
    directory = tempfile.mkdtemp()
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "deno")
    with open(path, "w") as script:
        script.write("#!/bin/sh\nexec sleep 60\n")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(directory)


async def test_a_process_that_never_becomes_ready_is_replaced(hanging_deno):
    async with Pool(runtime_config(pool_size=1, deno_path=hanging_deno, startup_timeout_seconds=0.3)) as pool:
        await asyncio.sleep(0.6)

        assert "did not become ready in time" in (pool.last_start_error or "")


async def test_cancelling_an_evaluation_kills_its_process():
    async with Pool(runtime_config(pool_size=1)) as pool:
        await pool.wait_until_ready()
        pid = ready_pids(pool)[0]
        task = asyncio.ensure_future(pool.evaluate("export default () => { while (true) {} }"))
        await asyncio.sleep(0.3)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        await wait_until_gone(pid)
        await pool.wait_until_ready()


async def test_a_stopped_pool_leaves_no_process_behind():
    pool = Pool(runtime_config(pool_size=2))
    await pool.start()
    await pool.wait_until_ready()
    pids = ready_pids(pool)

    await pool.stop()

    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    with pytest.raises(RuntimeUnavailable):
        await pool.evaluate("export default () => 1")


async def test_it_refuses_bad_requests_before_taking_a_process(engine):
    with pytest.raises(ValueError, match="either code or url"):
        await engine.evaluate()
    with pytest.raises(ValueError, match="invalid environment variable name"):
        await engine.evaluate("export default () => 1", env={"A=B": "x"})
    with pytest.raises(ValueError, match="timeout_seconds"):
        await engine.evaluate("export default () => 1", limits=Limits(timeout_seconds=10_000))
