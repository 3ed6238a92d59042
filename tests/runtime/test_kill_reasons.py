"""A kill reason (memory, threads, timeout) is only recorded on evidence the val can't
produce itself: a val that writes Deno's last words to stderr and exits is reported as
exiting, with its own code."""

import signal

import pytest

from runtime import jail
from runtime.process import explain_exit
from tests.runtime.helpers import runtime_config, start_engine
from tests.runtime.visitor import Visitor

# What Deno 2.9.8 wrote to stderr when it really failed (shortened), and how it ended.
REAL_HEAP_OUT_OF_MEMORY = (
    "<--- Last few GCs --->\n\n#\n# Fatal JavaScript out of memory: Reached heap limit\n#\n"
    "==== C stack trace ===============================\n"
)
REAL_WORKERS_OUT_OF_MEMORY = (
    "\n\n#\n# Fatal process out of memory: Failed to reserve virtual memory for CodeRange\n#\n"
    "==== C stack trace ===============================\n"
)
REAL_THREADS_EXHAUSTED = (
    "\n============================================================\n"
    "Deno could not start: unable to create worker threads.\n\n"
    "This usually happens when running in a container with a low\n"
    "PID limit. Try increasing the limit (e.g. --pids-limit=40).\n\nPlatform: linux x86_64\nVersion: 2.9.8\n"
)


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


@pytest.mark.parametrize(
    "last_words",
    [
        "Fatal JavaScript out of memory: Reached heap limit",
        "Fatal process out of memory: Failed to reserve virtual memory",
        "Deno could not start: unable to create worker threads.",
        "Resource temporarily unavailable",
    ],
)
async def test_a_val_that_writes_denos_last_words_and_exits_is_reported_as_exiting(engine, last_words):
    result = await engine.evaluate(
        f"""export default () => {{
            Deno.stderr.writeSync(new TextEncoder().encode({last_words!r} + "\\n"));
            Deno.exit(3);
        }}"""
    )

    assert (result.status, result.kill_reason) == ("error", "crashed")
    assert result.error["message"].startswith("the val's process exited with code 3")


async def test_exiting_with_denos_own_code_is_not_enough_to_claim_the_thread_cap(engine):
    result = await engine.evaluate(
        """export default () => {
            Deno.stderr.writeSync(new TextEncoder().encode("Deno could not start: unable to create worker threads.\\n"));
            Deno.exit(1);
        }"""
    )

    assert result.kill_reason == "crashed"
    assert result.error["message"].startswith("the val's process exited with code 1")


@pytest.mark.skipif(not jail.can_filter(), reason="no seccomp filter for this machine type")
async def test_a_val_cannot_send_itself_the_signals_the_host_trusts(engine):
    # Deno.kill needs no permission for the val's own pid.
    result = await engine.evaluate(
        """import process from "node:process";
        export default () => ["SIGTRAP", "SIGXCPU"].flatMap((name) => [
            () => Deno.kill(Deno.pid, name as Deno.Signal),
            () => process.kill(process.pid, name),
        ].map((send) => { try { send(); return "sent" } catch (error) { return String(error) } }))"""
    )

    assert result.status == "success"
    assert all("EPERM" in outcome for outcome in result.value), result.value


async def test_an_http_val_that_fakes_running_out_of_memory_is_reported_as_exiting(engine):
    visitor = Visitor()
    val = """export default () => {
        Deno.stderr.writeSync(new TextEncoder().encode("Fatal JavaScript out of memory\\n"));
        Deno.exit(3);
    }"""

    outcome = await engine.serve_http(
        ("val", "fakes-oom", 1, "alice"), code=val, scope=visitor.scope, receive=visitor.receive, send=visitor.send
    )

    assert visitor.status == 502
    assert outcome.error["message"].startswith("the val's process exited with code 3")


# --- The decision, on what Deno really did (measured on Deno 2.9.8, x86_64) ------------


def explain(code, stderr, at_thread_cap=False):
    status, reason, name, message = explain_exit(code, stderr, config=runtime_config(), at_thread_cap=at_thread_cap)
    return reason, message


def test_v8s_heap_limit_trap_is_out_of_memory():
    reason, message = explain(-signal.SIGTRAP, REAL_HEAP_OUT_OF_MEMORY)

    assert reason == "memory" and message.startswith("out of memory")


def test_v8_failing_to_reserve_memory_for_a_worker_is_out_of_memory():
    assert explain(-signal.SIGTRAP, REAL_WORKERS_OUT_OF_MEMORY)[0] == "memory"


def test_the_same_words_without_the_trap_are_just_an_exit():
    reason, message = explain(1, REAL_HEAP_OUT_OF_MEMORY)

    assert reason == "crashed" and "exited with code 1" in message


def test_running_out_of_threads_at_the_thread_cap_is_too_many_threads():
    assert explain(1, REAL_THREADS_EXHAUSTED, at_thread_cap=True)[0] == "threads"


def test_the_same_words_from_a_process_never_seen_at_its_cap_are_just_an_exit():
    reason, message = explain(1, REAL_THREADS_EXHAUSTED, at_thread_cap=False)

    assert reason == "crashed" and "exited with code 1" in message
    # Deno's own words, not the platform, version or command line printed after them.
    assert message.endswith(": Deno could not start: unable to create worker threads.")


def test_rlimit_cpu_is_a_timeout():
    assert explain(-signal.SIGXCPU, "")[0] == "timeout"
