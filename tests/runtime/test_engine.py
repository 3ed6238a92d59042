"""The process-wide engine: usable from any event loop and from sync code, with on_log
called where the caller is."""

import asyncio
import threading

import pytest

import runtime
from runtime import Engine
from tests.runtime.helpers import runtime_config, start_engine


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


LOGS_THREE_LINES = "export default () => { console.log('one'); console.log('two'); console.log('three'); return 3 }"


async def test_on_log_runs_on_the_callers_event_loop(engine):
    caller_loop = asyncio.get_running_loop()
    seen = []

    def on_log(level, message, timestamp_ms):
        seen.append((message, asyncio.get_running_loop() is caller_loop))

    result = await engine.evaluate(LOGS_THREE_LINES, on_log=on_log)

    assert result.value == 3
    assert seen == [("one", True), ("two", True), ("three", True)]  # all of them, before the result


async def test_on_log_may_be_a_coroutine_function(engine):
    seen = []

    async def on_log(level, message, timestamp_ms):
        seen.append(message)

    await engine.evaluate(LOGS_THREE_LINES, on_log=on_log)
    await asyncio.sleep(0.05)

    assert seen == ["one", "two", "three"]


def test_evaluate_sync_works_from_plain_threads_and_calls_on_log_there(engine):
    seen = []
    results = []

    def call():
        results.append(
            engine.evaluate_sync(LOGS_THREE_LINES, on_log=lambda *line: seen.append(threading.current_thread().name))
        )

    threads = [threading.Thread(target=call, name=f"caller-{n}") for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [result.value for result in results] == [3, 3, 3]
    assert sorted(seen) == sorted([f"caller-{n}" for n in range(3)] * 3)


async def test_evaluate_sync_refuses_to_block_an_event_loop(engine):
    with pytest.raises(RuntimeError, match="use await evaluate"):
        engine.evaluate_sync("export default () => 1")


def test_two_event_loops_can_share_one_engine(engine):
    async def one(n):
        return (await engine.evaluate("export default (n: number) => n + 1", args=[n])).value

    assert asyncio.run(one(1)) == 2
    assert asyncio.run(one(41)) == 42


def test_an_engine_starts_on_first_use_and_can_start_again_after_shutdown():
    engine = Engine(runtime_config(pool_size=1))

    assert engine.evaluate_sync("export default () => 'first'").value == "first"
    engine.shutdown()
    assert engine.evaluate_sync("export default () => 'again'").value == "again"
    engine.shutdown()


def test_the_module_level_api_uses_the_process_wide_engine(monkeypatch):
    monkeypatch.setattr(runtime.engine._default, "config", runtime_config(pool_size=1))
    try:
        result = runtime.evaluate_sync("export default () => 'from the default engine'")
    finally:
        runtime.shutdown()

    assert result.value == "from the default engine"


HELLO_HTTP = 'export default () => new Response("hello")'


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_http_vals_are_served_on_the_callers_loop_and_their_processes_end_with_it(engine):
    from tests.runtime.visitor import Visitor

    async def serve_twice():
        pids = []
        for _ in range(2):
            visitor = Visitor()
            outcome = await engine.serve_http(
                ("val", "loop-bound", 1, "alice"), code=HELLO_HTTP,
                scope=visitor.scope, receive=visitor.receive, send=visitor.send,
            )
            assert visitor.body == b"hello"
            pids.append(outcome.pid)
        return pids

    first_loop = asyncio.run(serve_twice())
    second_loop = asyncio.run(serve_twice())

    assert first_loop[0] == first_loop[1]  # warm between requests on one loop
    assert second_loop[0] not in first_loop  # each loop has warm processes of its own
    assert not alive(first_loop[0]) and not alive(second_loop[0])  # torn down with their loop


async def test_shutdown_kills_the_warm_processes_of_a_loop_still_running():
    from tests.runtime.visitor import Visitor

    engine = Engine(runtime_config(pool_size=0))
    visitor = Visitor()
    outcome = await engine.serve_http(
        ("val", "shut-down", 1, "alice"), code=HELLO_HTTP, scope=visitor.scope, receive=visitor.receive, send=visitor.send,
    )
    assert alive(outcome.pid)

    engine.shutdown()  # from this very loop: it can't wait on it, so it kills

    assert not alive(outcome.pid)
