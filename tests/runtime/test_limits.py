"""Every limit ends the evaluation with a clear, recorded reason, and the pool stays
healthy afterwards."""

import time

import pytest

from runtime import Limits
from runtime.process import LogCollector, record_raw_output
from tests.runtime.helpers import assert_still_works, needs_root, start_engine


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


def test_the_default_timeout_is_ten_seconds():
    assert Limits().timeout_seconds == 10


async def test_it_kills_a_cpu_bound_infinite_loop_on_time(engine):
    started = time.monotonic()

    result = await engine.evaluate("export default () => { while (true) {} }", limits=Limits(timeout_seconds=1))

    assert time.monotonic() - started < 2
    assert result.status == "timeout"
    assert result.kill_reason == "timeout"
    assert "longer than 1 s" in result.error["message"]
    await assert_still_works(engine)


async def test_it_stops_a_val_that_waits_too_long(engine):
    result = await engine.evaluate(
        "export default () => new Promise(r => setTimeout(r, 60_000))", limits=Limits(timeout_seconds=0.5)
    )

    assert result.status == "timeout"
    await assert_still_works(engine)


async def test_a_promise_that_can_never_settle_is_reported_at_once(engine):
    result = await engine.evaluate("export default () => new Promise(() => {})")

    assert result.status == "error"
    assert "promise that can never settle" in result.error["message"]
    assert result.duration_ms < 2000


async def test_a_heap_memory_bomb_ends_as_out_of_memory(engine):
    result = await engine.evaluate(
        "export default () => { const keep = []; while (true) keep.push(new Array(100_000).fill(Math.random())) }"
    )

    assert result.status == "error"
    assert result.kill_reason == "memory"
    assert result.error["message"].startswith("out of memory")
    await assert_still_works(engine)


async def test_gigabytes_of_array_buffers_are_killed_as_out_of_memory(engine):
    result = await engine.evaluate(
        """export default () => {
            const keep = [];
            for (let i = 0; i < 64; i++) keep.push(new Uint8Array(64 * 1024 * 1024).fill(1));  // 4 GiB
            return keep.length;
        }"""
    )

    assert result.status == "killed"
    assert result.kill_reason == "memory"
    assert result.error["message"].startswith("out of memory")
    assert result.peak_memory_bytes > 512 * 1024 * 1024
    await assert_still_works(engine)


async def test_array_buffers_caught_and_held_are_still_killed(engine):
    result = await engine.evaluate(
        """export default async () => {
            const keep = [];
            try { for (let i = 0; i < 64; i++) keep.push(new Uint8Array(64 * 1024 * 1024).fill(1)) } catch {}
            await new Promise(r => setTimeout(r, 2000));
            return keep.length;
        }"""
    )

    assert (result.status, result.kill_reason) == ("killed", "memory")


async def test_webassembly_memory_is_capped_too(engine):
    result = await engine.evaluate(
        """export default () => {
            const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
            for (let i = 0; i < 64; i++) { memory.grow(1024); new Uint8Array(memory.buffer).fill(1) }
            return memory.buffer.byteLength;
        }"""
    )

    assert result.status in ("killed", "error")
    assert result.kill_reason == "memory" or "grow" in result.error["message"]
    await assert_still_works(engine)


async def test_workers_are_capped(engine):
    # 1,000 Workers took 5.4 GiB when nothing capped them.
    result = await engine.evaluate(
        """export default async () => {
            const workers = [];
            for (let i = 0; i < 1000; i++) {
                workers.push(new Worker("data:application/javascript,setInterval(() => {}, 1000)", { type: "module" }));
            }
            await new Promise(r => setTimeout(r, 1000));
            return workers.length;
        }""",
        limits=Limits(timeout_seconds=5),
    )

    assert result.status in ("error", "killed")
    assert result.kill_reason in ("memory", "threads")
    assert result.peak_memory_bytes < 600 * 1024 * 1024
    await assert_still_works(engine)


async def test_a_few_workers_still_work(engine):
    result = await engine.evaluate(
        """export default () => Promise.all([1, 2, 3].map((n) => new Promise((resolve) => {
            const worker = new Worker(`data:application/javascript,postMessage(${n} * 10)`, { type: "module" });
            worker.onmessage = (event) => { worker.terminate(); resolve(event.data) };
        })))"""
    )

    assert result.value == [10, 20, 30]


@needs_root
async def test_threads_are_capped_by_the_processes_own_uid():
    # With memory out of the way, RLIMIT_NPROC on the process's own uid is the cap.
    engine = start_engine(pool_size=1, max_data_mb=64 * 1024, max_rss_mb=4096, max_threads=24)
    try:
        result = await engine.evaluate(
            """export default async () => {
                let started = 0;
                try {
                    for (; started < 100; started++) {
                        new Worker("data:application/javascript,setInterval(() => {}, 1000)", { type: "module" });
                        await new Promise(r => setTimeout(r, 5));
                    }
                } catch (error) { return { started, error: String(error) } }
                return { started };
            }""",
            limits=Limits(timeout_seconds=10),
        )
        await assert_still_works(engine)
    finally:
        engine.shutdown()

    assert result.status in ("success", "error")
    if result.status == "success":
        assert result.value["started"] < 24 and "Resource temporarily unavailable" in result.value["error"]
    else:
        # Died at the cap. Seen there by the host's thread-count poll: "threads"; between two
        # polls (a Worker's threads start in a burst), a crash with Deno's words for the cap.
        message = result.error["message"]
        assert result.kill_reason == "threads" or (
            "Resource temporarily unavailable" in message or "unable to create worker threads" in message
        )


async def test_log_volume_is_capped_with_one_truncation_line(engine):
    lines = []

    result = await engine.evaluate(
        "export default () => { for (let i = 0; i < 10_000; i++) console.log('x'.repeat(99)); return 'done' }",
        limits=Limits(max_log_bytes=50_000),
        on_log=lambda *line: lines.append(line),
    )

    assert (result.status, result.value) == ("success", "done")
    assert sum(len(line.message) for line in result.logs[:-1]) <= 50_000
    assert result.logs[-1].message.startswith("logs truncated")
    assert [line.message.startswith("logs truncated") for line in result.logs].count(True) == 1
    assert len(lines) == len(result.logs)


async def test_raw_output_is_capped_on_the_host_side_too(engine):
    # Writing to stdout directly bypasses the harness's console; the host counts it.
    result = await engine.evaluate(
        """export default () => {
            const line = new TextEncoder().encode("y".repeat(99) + "\\n");
            for (let i = 0; i < 10_000; i++) Deno.stdout.writeSync(line);
            return "done";
        }""",
        limits=Limits(max_log_bytes=50_000),
    )

    assert result.value == "done"
    assert sum(len(line.message) for line in result.logs) < 51_000
    assert result.logs[-1].message.startswith("logs truncated")


async def test_a_flood_of_empty_raw_lines_fills_the_log_cap_and_costs_the_host_little(engine):
    # Unmetered, this wrote a million empty lines a second, all of them kept, and took
    # more host CPU than it ran for.
    started = time.process_time()

    result = await engine.evaluate(
        """export default () => {
            const newlines = new Uint8Array(1 << 20).fill(10);
            const end = Date.now() + 1500;
            while (Date.now() < end) Deno.stdout.writeSync(newlines);
            return "done";
        }"""
    )

    host_cpu_seconds = time.process_time() - started
    assert result.value == "done"
    assert len(result.logs) <= 1_000_000 // 32 + 1
    assert [line.message.startswith("logs truncated") for line in result.logs].count(True) == 1
    assert host_cpu_seconds < 1.0


async def test_a_flood_of_empty_console_lines_is_cut_off_in_the_val_itself(engine):
    started = time.process_time()

    result = await engine.evaluate(
        "export default () => { for (let i = 0; i < 500_000; i++) console.log(''); return 'done' }"
    )

    # Without the harness's own count, the host parsed every one of half a million
    # messages (2.4 s of its CPU) and the val's queue of them reached 480 MB.
    host_cpu_seconds = time.process_time() - started
    assert result.value == "done"
    assert len(result.logs) <= 1_000_000 // 32 + 1
    assert result.logs[-1].message.startswith("logs truncated")
    assert host_cpu_seconds < 1.0


def test_every_log_line_costs_something_even_when_empty():
    logs = LogCollector(max_bytes=3200, on_log=None)

    for _ in range(1000):
        logs.add("log", "", 0)

    assert len(logs.lines) == 100 + 1
    assert logs.lines[-1].message.startswith("logs truncated")


def test_once_the_log_is_full_raw_output_is_only_searched_for_the_end_marker():
    logs = LogCollector(max_bytes=3200, on_log=None)
    marker = b"0123456789abcdef"

    left_over, reached = record_raw_output(b"\n" * 200 + b"0123456789", "stdout", logs, marker)
    assert (left_over, reached) == (b"\n" * 5 + b"0123456789", False)
    assert len(logs.lines) == 100 + 1

    assert record_raw_output(left_over + b"abcdef\n", "stdout", logs, marker) == (b"", True)
    assert len(logs.lines) == 100 + 1


async def test_a_result_over_the_cap_is_an_error(engine):
    result = await engine.evaluate("export default () => 'x'.repeat(20_000)", limits=Limits(max_result_bytes=10_000))

    assert result.status == "error"
    assert result.kill_reason == "result too large"
    assert result.error["message"].startswith("result too large")
    await assert_still_works(engine)


async def test_a_huge_result_is_refused_without_reading_it_all(engine):
    result = await engine.evaluate("export default () => 'x'.repeat(50_000_000)", limits=Limits(max_result_bytes=10_000))

    assert result.kill_reason == "result too large"
    await assert_still_works(engine)


async def test_a_response_body_over_the_cap_is_an_error(engine):
    result = await engine.evaluate(
        "export default () => new Response('x'.repeat(20_000))", limits=Limits(max_result_bytes=10_000)
    )

    assert result.kill_reason == "result too large"
