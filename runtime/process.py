"""One sandboxed Deno process running the harness. It serves one evaluation, then dies.

The host decides every outcome itself (timeout, memory, crashes): the guest is only
trusted to say "here is my evaluation's output", once.
"""

import asyncio
import json
import logging
import os
import signal
import socket
import tempfile
import time

from runtime import grants, protocol, sandbox
from runtime.hostcalls import HostCalls, writer_for
from runtime.result import (
    ERROR,
    KILLED,
    REASON_CRASHED,
    REASON_MEMORY,
    REASON_RESULT_TOO_LARGE,
    REASON_THREADS,
    REASON_TIMEOUT,
    SUCCESS,
    TIMEOUT,
    LogLine,
    Result,
)

logger = logging.getLogger(__name__)

MAX_RAW_LINE_BYTES = 64 * 1024
# What each log line costs against max_log_bytes on top of its text (console.ts charges
# the same), so that a flood of empty lines fills the cap too: 1 MB is at most 32,768 lines.
LOG_LINE_OVERHEAD_BYTES = 32
# Room for a result's wrapping, and for log lines the harness cut at 64K characters
# (JSON escaping can make those several times longer).
FRAME_OVERHEAD_BYTES = 512 * 1024
STDERR_TAIL_BYTES = 4096
# Once a log is full, the host reads the process's stdout and stderr only this often: a
# val flooding them then waits in its own writes instead of costing the host CPU.
FULL_LOG_READ_PAUSE_SECONDS = 0.01


# An evaluation still running after this long is a long one (most take milliseconds):
# its threads get LONG_RUNNING_NICE, so on busy cores the scheduler favours short ones,
# and one user's endless loops can't slow everyone else's quick evaluations much.
LONG_RUNNING_SECONDS = 1.0
LONG_RUNNING_NICE = 10


def lower_cpu_priority(pid):
    """Gives every thread of the live process `pid` the nice value LONG_RUNNING_NICE
    (threads it starts later inherit it). Best effort: it may have just died."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for thread in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, int(thread), LONG_RUNNING_NICE)
        except (OSError, ValueError):
            pass


class StartupFailed(Exception):
    pass


def now_ms():
    return time.time() * 1000


def read_status_bytes(pid, field):
    """A memory figure (VmRSS, VmHWM) of a live process, in bytes, or None."""
    return read_status(pid, field).get(field)


def read_status(pid, *fields):
    """Figures from a live process's /proc/<pid>/status, by name: memory ones (Vm...) in
    bytes, the others (Threads) as they are. Missing ones are left out."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in fields:
                    number = int(value.split()[0])
                    found[name] = number * 1024 if name.startswith("Vm") else number
    except (OSError, ValueError, IndexError):
        pass
    return found


def stat_fields(pid):
    """The fields of /proc/<pid>/stat after the command name (the state first), or None
    once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", errors="replace") as stat:
            # The command name (field 2) may hold spaces; what follows its ")" is fixed.
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def is_gone(pid):
    """Whether the process has exited: no longer there, or a zombie."""
    fields = stat_fields(pid)
    return not fields or fields[0] in ("Z", "X")


def read_cpu_seconds(pid):
    """User plus system CPU time a live process has used, in seconds, or None."""
    fields = stat_fields(pid)
    try:
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (TypeError, ValueError, IndexError):
        return None


class LogCollector:
    """An evaluation's log lines, capped in total size, passed on to on_log as they come.

    Each line costs its UTF-8 bytes plus LOG_LINE_OVERHEAD_BYTES.
    """

    def __init__(self, max_bytes, on_log, what="evaluation"):
        self.what = what
        self.max_bytes = max_bytes
        self.on_log = on_log
        self.lines = []
        self.used = 0
        self.truncated = False

    def add(self, level, message, timestamp_ms):
        if self.truncated:
            return
        size = len(message.encode("utf-8", "replace")) + LOG_LINE_OVERHEAD_BYTES
        if self.used + size > self.max_bytes:
            self.truncate()
            return
        self.used += size
        self._append(LogLine(level, message, timestamp_ms))

    @property
    def full(self):
        """Whether it takes no more lines (then raw output isn't even split into lines)."""
        return self.truncated

    def truncate(self):
        if not self.truncated:
            self.truncated = True
            message = f"logs truncated: this {self.what} logged more than {self.max_bytes:,} bytes"
            self._append(LogLine("warn", message, now_ms()))

    def _append(self, line):
        self.lines.append(line)
        if self.on_log is None:
            return
        try:
            self.on_log(line.level, line.message, line.timestamp_ms)
        except Exception:
            logger.exception("on_log callback failed")


def record_raw_output(data, level, logs, marker, at_end=False):
    """Adds data's lines to logs (with add() and full, as LogCollector) as `level` lines,
    up to the end marker.

    Returns (what is left over: an unfinished line to put before the next read, whether
    the marker was reached).
    """
    start = 0
    while not logs.full:
        end = data.find(b"\n", start)
        if end < 0:
            if len(data) - start <= MAX_RAW_LINE_BYTES and not at_end:
                return data[start:], False
            if start >= len(data):
                return b"", False
            end = len(data)  # an over-long line, or the last one without a newline
        line = data[start:end]
        start = end + 1
        if marker and line.endswith(marker):
            if len(line) > len(marker):
                _add_raw_line(logs, level, line[: -len(marker)])
            return b"", True
        _add_raw_line(logs, level, line)
    # Nothing more will be recorded. Splitting a flood of empty lines would cost the host
    # a Python call per line, so only look for the marker now, in one search, keeping its
    # length less one byte for the next read in case it straddles two.
    rest = data[start:]
    if not marker:
        return b"", False
    if marker in rest:
        return b"", True
    return rest[-(len(marker) - 1) :], False


def _add_raw_line(logs, level, line):
    logs.add(level, line[:MAX_RAW_LINE_BYTES].decode("utf-8", "replace"), now_ms())


# What Deno ends with when it fails in ways the host has a name for (Deno 2.9.8, measured
# on x86_64). V8's fatal errors, out of memory among them, end in a trap instruction.
V8_FATAL_ERROR_CODE = -signal.SIGTRAP
DENO_ERROR_CODE = 1  # Deno's own fatal errors, its panics and a promise that can't settle
DENO_UNSTABLE_API_CODE = 70


def explain_exit(code, stderr, *, config, at_thread_cap, unfinished="returning a result"):
    """(status, kill_reason, error name, message) for a process that ended on its own with
    exit status `code` (negative: a signal) and `stderr` (its last 4 KB).

    A val can write anything to stderr and exit with any code (Deno.exit(n)), so what
    stderr says only counts together with what the val can't do: die of SIGTRAP or
    SIGXCPU (jail.py's filter stops it sending those to itself), or reach its thread cap
    (at_thread_cap: seen at RLIMIT_NPROC threads). Anything else is "exited with code n".
    """
    if code == V8_FATAL_ERROR_CODE and "Fatal JavaScript out of memory" in stderr:
        return ERROR, REASON_MEMORY, "OutOfMemoryError", (
            f"out of memory: the val used more than its {config.heap_mb} MB JavaScript heap"
        )
    if code == V8_FATAL_ERROR_CODE and "Fatal process out of memory" in stderr:
        # Most often a Worker: each one reserves about 512 MB against RLIMIT_DATA.
        return ERROR, REASON_MEMORY, "OutOfMemoryError", (
            "out of memory: the val's process could not reserve more memory (too many Workers?)"
        )
    if (
        code == DENO_ERROR_CODE
        and at_thread_cap
        and ("unable to create worker threads" in stderr or "Resource temporarily unavailable" in stderr)
    ):
        return ERROR, REASON_THREADS, "TooManyThreadsError", (
            f"too many threads: the val started more Workers than its limit of {config.max_threads} threads"
        )
    if code == DENO_UNSTABLE_API_CODE and "Worker.deno.permissions" in stderr:
        return ERROR, REASON_CRASHED, "PermissionDenied", (
            "a Worker asked for permissions of its own, which vals may not do"
        )
    if code == DENO_ERROR_CODE and "Top-level await promise never resolved" in stderr:
        # Deno stops when nothing is left that could settle the val's promise.
        return ERROR, REASON_CRASHED, "Error", (
            "the val returned a promise that can never settle (nothing was left that could settle it)"
        )
    if code == -signal.SIGXCPU:
        return TIMEOUT, REASON_TIMEOUT, "TimeoutError", "the val used more CPU time than allowed"
    if code == -signal.SIGKILL:
        what = "was killed from outside (perhaps by the OS for using too much memory)"
    elif code is not None and code < 0:
        what = f"died of signal {signal.Signals(-code).name}"
    else:
        what = f"exited with code {code}"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    # Deno's own last words come before its platform, version and command line: say those.
    errors = [line for line in lines if line.lower().startswith(("error", "panic", "fatal", "deno could not start"))]
    detail = f": {(errors or lines)[-1][:500]}" if lines else ""
    return ERROR, REASON_CRASHED, "ProcessExited", f"the val's process {what} before {unfinished}{detail}"


class DenoProcess:
    def __init__(self, config, denied_hosts, uid):
        self.config = config
        self.uid = uid
        self.dir = tempfile.mkdtemp(prefix="p-", dir=os.path.join(config.work_dir, "processes"))
        os.chmod(self.dir, 0o711)
        self._lock = sandbox.lock_process_dir(self.dir)  # held until the dir is gone
        self.cwd = os.path.join(self.dir, "cwd")
        os.mkdir(self.cwd, 0o711)
        self.socket_path = os.path.join(self.dir, "control.sock")
        # Its own module cache, removed with self.dir (see sandbox.py).
        self.deno_dir = sandbox.process_deno_dir(config, self.dir, uid)
        self.import_token = grants.new_token()  # sent with its imports from the module host
        self.command = sandbox.sandbox_command(config, self.socket_path, denied_hosts, uid)
        self.proc = None
        self.frames = None
        self.writer = None
        self.exit_task = None
        self.output_tasks = []
        self.peak_rss = 0
        self.peak_threads = 0  # the most threads seen at once, for crash_result()
        self.stderr_tail = b""
        self.startup_output = b""
        self.used = False
        self._logs = None  # the running evaluation's LogCollector
        self._output_marker = None
        self.output_finished = {"stdout": asyncio.Event(), "stderr": asyncio.Event()}
        self._closing = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.returncode is None

    def still_running(self):
        """alive, asking the kernel too: asyncio learns of an exit a loop turn or more
        after it happens (later still on a busy machine), so a process it still counts as
        running may already be gone, or a zombie. One read of /proc: for handing a
        process out, not for every request's check."""
        return self.alive and not is_gone(self.proc.pid)

    # --- Start-up ------------------------------------------------------------

    async def start(self):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.setblocking(False)
        try:
            listener.bind(self.socket_path)
            listener.listen(1)
            if self.uid is not None:
                os.chown(self.socket_path, self.uid, -1)
            os.chmod(self.socket_path, 0o600)
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.cwd,
                env=sandbox.sandbox_environment(self.config, self.import_token, self.deno_dir),
                start_new_session=True,  # keep terminal signals meant for the host away
            )
            self.exit_task = asyncio.ensure_future(self.proc.wait())
            self.output_tasks = [
                asyncio.ensure_future(self._read_output(self.proc.stdout, "stdout")),
                asyncio.ensure_future(self._read_output(self.proc.stderr, "stderr")),
            ]
            async with asyncio.timeout(self.config.startup_timeout_seconds):
                connection = await self._accept(listener)
                reader, self.writer = await asyncio.open_unix_connection(sock=connection)
                self.frames = protocol.LineReader(reader, FRAME_OVERHEAD_BYTES)
                line = await self.frames.read_line()
        except TimeoutError:
            raise StartupFailed(self._startup_problem("did not become ready in time")) from None
        finally:
            # One connection only: nobody can connect after the harness, even with
            # permission to, because nothing listens and the file is gone.
            listener.close()
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
        if line is None or protocol.parse_message(line) is None:
            raise StartupFailed(self._startup_problem("did not say it was ready"))

    async def _accept(self, listener):
        loop = asyncio.get_running_loop()
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        try:
            await asyncio.wait([accept, self.exit_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not accept.done():
                accept.cancel()
        if not accept.done() or accept.cancelled():
            await asyncio.gather(*self.output_tasks, return_exceptions=True)
            raise StartupFailed(self._startup_problem(f"exited with code {self.proc.returncode}"))
        connection, _ = accept.result()
        return connection

    def _startup_problem(self, what):
        output = self.startup_output.decode("utf-8", "replace").strip()
        return f"deno {what}" + (f": {output[-1500:]}" if output else "")

    def send_raw_output_to(self, sink):
        """For a warm HTTP process: its raw stdout and stderr lines go to sink.add(level,
        message, timestamp_ms) as they come, for as long as it lives, except while
        sink.full is true."""
        self.used = True
        self._logs = sink

    async def _read_output(self, stream, level):
        """What the process writes itself: only ever raw log lines of its evaluation.

        The harness ends its output with the job's nonce (which the val can't know)
        before it sends the result, so the host needn't wait for the pipe to close.
        """
        finished = self.output_finished[level]
        unread = b""
        while True:
            chunk = await stream.read(64 * 1024)
            if level == "stderr":
                self.stderr_tail = (self.stderr_tail + chunk)[-STDERR_TAIL_BYTES:]
            if self._logs is None and not self.used:
                self.startup_output = (self.startup_output + chunk)[-STDERR_TAIL_BYTES:]
            elif self._logs is not None and not finished.is_set():
                unread, reached_marker = record_raw_output(
                    unread + chunk, level, self._logs, self._output_marker, at_end=not chunk
                )
                if reached_marker:
                    finished.set()
            if not chunk:
                finished.set()
                return
            if self._logs is not None and self._logs.full:
                await asyncio.sleep(FULL_LOG_READ_PAUSE_SECONDS)

    async def _wait_for_output(self):
        """Until stdout and stderr have each reached the end marker, or end of file."""
        try:
            async with asyncio.timeout(2):
                for finished in self.output_finished.values():
                    await finished.wait()
        except TimeoutError:
            pass

    # --- The evaluation ------------------------------------------------------

    async def evaluate(self, job, limits, on_log, on_call=None):
        """Sends the job, waits for the outcome, and kills the process. Returns a Result."""
        self.used = True
        nonce = protocol.new_nonce()
        self._output_marker = nonce.encode()
        logs = self._logs = LogCollector(limits.max_log_bytes, on_log)
        self.frames.max_bytes = max(limits.max_result_bytes, limits.max_host_call_bytes) + FRAME_OVERHEAD_BYTES
        host_calls = HostCalls(on_call, limits, writer_for(self.writer))
        job = self.take_import_grant(job)
        started = time.monotonic()
        try:
            self.writer.write(
                protocol.encode_job(
                    nonce=nonce,
                    max_log_bytes=limits.max_log_bytes,
                    max_host_call_bytes=limits.max_host_call_bytes,
                    **job,
                )
            )
            await self.writer.drain()
        except ConnectionError:
            pass  # it died just now: the outcome will say so

        self.peak_rss = read_status_bytes(self.pid, "VmRSS") or 0
        try:
            outcome = await self._wait_for_outcome(nonce, logs, limits, host_calls)
        finally:
            host_calls.end("the evaluation has ended")
        duration_ms = int((time.monotonic() - started) * 1000)
        peak = self._peak_memory()
        self.kill()  # the pool's slot reaps it and cleans up, off the caller's path
        await self._wait_for_output()
        result = self._build_result(outcome, limits, peak)
        result.logs = logs.lines
        result.duration_ms = duration_ms
        return result

    async def _wait_for_outcome(self, nonce, logs, limits, host_calls):
        """("result", message) or ("timeout",) / ("memory",) / ("too large",) / ("exited",)."""
        frames = asyncio.ensure_future(self._read_frames(nonce, logs, host_calls))
        memory = asyncio.ensure_future(self._watch_memory())
        waiting = {frames, memory, self.exit_task}
        deadline = time.monotonic() + limits.timeout_seconds
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return ("timeout",)
                done, _ = await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if frames in done:
                    try:
                        message = frames.result()
                    except protocol.FrameTooLarge:
                        return ("too large",)
                    if message is not None:
                        return ("result", message)
                    waiting.discard(frames)  # the channel closed: wait for the exit
                if memory in done:
                    return ("memory",)
                if self.exit_task in done:
                    # A result or logs may still be in flight on the socket.
                    try:
                        async with asyncio.timeout(1):
                            message = await frames
                    except (TimeoutError, protocol.FrameTooLarge):
                        message = None
                    return ("result", message) if message else ("exited",)
        finally:
            frames.cancel()
            memory.cancel()

    async def _read_frames(self, nonce, logs, host_calls):
        """Reads messages until the result. Anything without the nonce is dropped."""
        while True:
            line = await self.frames.read_line()
            if line is None:
                return None
            message = protocol.parse_message(line, nonce)
            if message is None:
                continue
            if message["type"] == "log":
                logs.add(message["level"], message["message"], float(message["ts"]))
            elif message["type"] == "logs_truncated":
                logs.truncate()
            elif message["type"] == "call":
                host_calls.handle(message)
            elif message["type"] == "result":
                return message

    async def _watch_memory(self):
        """Returns once resident memory passes the cap; the caller then kills the process.
        Also lowers its CPU priority once it has run for LONG_RUNNING_SECONDS."""
        cap = self.config.max_rss_mb * 1024 * 1024
        lower_priority_at = time.monotonic() + LONG_RUNNING_SECONDS
        while True:
            rss = self.poll_status()
            if rss is not None and rss > cap:
                return
            if lower_priority_at is not None and time.monotonic() >= lower_priority_at:
                lower_priority_at = None
                lower_cpu_priority(self.pid)
            await asyncio.sleep(self.config.rss_poll_seconds)

    def poll_status(self):
        """Reads the live process's resident memory and thread count and keeps their peaks.
        Returns the memory in bytes, or None."""
        status = read_status(self.pid, "VmRSS", "Threads")
        self.peak_threads = max(self.peak_threads, status.get("Threads", 0))
        rss = status.get("VmRSS")
        if rss is not None:
            self.peak_rss = max(self.peak_rss, rss)
        return rss

    def _peak_memory(self):
        high_water_mark = read_status_bytes(self.pid, "VmHWM") if self.alive else None
        peak = max(high_water_mark or 0, self.peak_rss)
        return peak or None

    def _build_result(self, outcome, limits, peak):
        kind = outcome[0]
        over_memory = peak is not None and peak > self.config.max_rss_mb * 1024 * 1024
        if kind == "memory" or (kind == "result" and over_memory):
            return self._failure(
                KILLED, REASON_MEMORY, "OutOfMemoryError",
                f"out of memory: the val's process used more than {self.config.max_rss_mb} MB", peak,
            )
        if kind == "timeout":
            return self._failure(
                TIMEOUT, REASON_TIMEOUT, "TimeoutError",
                f"the val ran for longer than {limits.timeout_seconds:g} s and was stopped", peak,
            )
        if kind == "too large":
            return self._failure(
                ERROR, REASON_RESULT_TOO_LARGE, "ResultTooLargeError",
                f"result too large: the return value is over {limits.max_result_bytes:,} bytes of JSON", peak,
            )
        if kind == "exited":
            return self.crash_result(peak)
        message = outcome[1]
        if not message["ok"]:
            return Result(status=ERROR, error=protocol.decode_error(message["error"]), peak_memory_bytes=peak)
        value_type, value = protocol.decode_value(message["value"])
        try:
            json_bytes = len(json.dumps(value)) if value_type == "json" else 0
        except RecursionError:  # the harness refuses this, so only a forged frame gets here
            return self._failure(
                ERROR, None, "TypeError", "the return value is nested too deeply for the host to read", peak,
            )
        if json_bytes > limits.max_result_bytes:
            return self._failure(
                ERROR, REASON_RESULT_TOO_LARGE, "ResultTooLargeError",
                f"result too large: the return value is over {limits.max_result_bytes:,} bytes of JSON", peak,
            )
        if value_type == "response" and len(value["body"]) > limits.max_result_bytes:
            return self._failure(
                ERROR, REASON_RESULT_TOO_LARGE, "ResultTooLargeError",
                f"result too large: the response body is over {limits.max_result_bytes:,} bytes", peak,
            )
        return Result(status=SUCCESS, value=value, value_type=value_type, peak_memory_bytes=peak)

    def crash_result(self, peak, unfinished="returning a result"):
        """The process ended on its own, before `unfinished`. Say why, as well as we can tell."""
        stderr = self.stderr_tail.decode("utf-8", "replace")
        if self._output_marker:
            stderr = stderr.replace(self._output_marker.decode(), "")
        status, reason, name, message = explain_exit(
            self.proc.returncode,
            stderr,
            config=self.config,
            # RLIMIT_NPROC only caps a process that has a uid of its own (see sandbox.py).
            at_thread_cap=self.uid is not None and self.peak_threads >= self.config.max_threads,
            unfinished=unfinished,
        )
        return self._failure(status, reason, name, message, peak)

    @staticmethod
    def _failure(status, reason, name, message, peak):
        return Result(
            status=status,
            error={"name": name, "message": message, "stack": ""},
            kill_reason=reason,
            peak_memory_bytes=peak,
        )

    # --- The end -------------------------------------------------------------

    async def close(self):
        """SIGKILL (a val can trap SIGTERM), reap, and remove the process's directory."""
        if self._closing is None or self._closing.cancelled():
            # (Again, if a loop being torn down cancelled the first attempt.)
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    def take_import_grant(self, job):
        """The job without its import grant, which now goes with this process's token."""
        job = dict(job)
        grants.grant(self.import_token, job.pop("import_grant", None))
        return job

    def kill(self):
        grants.revoke(self.import_token)
        if self.alive:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def _close(self):
        self.kill()  # which revokes its import grant
        if self.proc:
            pipes = (self.proc.stdout, self.proc.stderr)
            drains = [_drain_if_abandoned(task, pipe) for task, pipe in zip(self.output_tasks, pipes)]
            await asyncio.gather(self.proc.wait(), *drains)
        if self.writer:
            self.writer.close()
        if self.output_tasks:
            # The pipes reach end-of-file once the process is gone.
            try:
                async with asyncio.timeout(2):
                    await asyncio.gather(*self.output_tasks, return_exceptions=True)
            except TimeoutError:
                for task in self.output_tasks:
                    task.cancel()
        sandbox.remove_process_dir(self.dir)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


async def _drain_if_abandoned(reader, stream):
    """wait() also waits for the pipes to close. A reader cancelled along with its event
    loop (torn down with the process still running) no longer drains its pipe: drain it."""
    await asyncio.wait([reader])
    if not reader.cancelled():
        return
    try:
        while await stream.read(64 * 1024):
            pass
    except Exception:  # noqa: BLE001 - a broken pipe is as good as a drained one
        pass
