"""Faults injected into real processes: what the visitor sees, what is recorded, and that
the platform carries on afterwards."""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from tests.factory import make_user, make_val, ticking_val
from tests.live import LiveServer, SchedulerProcess, child_pids, free_port, quiet_server_before_flush  # noqa: F401 (an autouse fixture)
from tests.scale.helpers import Visitor, read_log, streamed_live, val_host, wait_until
from vals.blob import Blob
from vals.evaluations.models import Evaluation
from vals.models import Val

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

# Tells the test which Deno process serves it, then answers slowly.
PID_THEN_SLOW_HTTP_VAL = """\
export default async (req: Request) => {
  if (new URL(req.url).pathname === "/pid") return new Response(String(Deno.pid));
  await new Promise((resolve) => setTimeout(resolve, 8000));
  return new Response("too late");
};
"""

# Logs its process id, then takes its time, unless told to be quick.
PID_THEN_SLOW_RUN = """\
export default async (quick) => {
  console.log(String(Deno.pid));
  if (!quick) await new Promise((resolve) => setTimeout(resolve, 8000));
  return "finished";
};
"""

TICKING_VAL = ticking_val(12)


# Web processes without the embedded scheduler, so that only the tests' schedulers run crons.
WEB = {"EVALUATION_TIMEOUT_SECONDS": "20", "EMBEDDED_SCHEDULER": "false"}


def gone(pid):
    """The process has exited (a zombie counts: it runs no more code)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    live = LiveServer(WEB)
    yield live
    live.stop()


# --- Deno processes ------------------------------------------------------------------


def http_records(count):
    """The gateway's records once all `count` have been written (they are batched)."""
    wait_until(lambda: Evaluation.objects.filter(trigger="http").count() >= count, timeout=10, message=f"{count} HTTP records")
    return list(Evaluation.objects.filter(trigger="http").order_by("id"))


def test_a_deno_process_killed_mid_request_gives_the_visitor_a_clean_502_and_the_next_request_is_served(server):
    make_val(make_user("alice"), name="pid", type="http", code=PID_THEN_SLOW_HTTP_VAL)
    url, headers = f"http://127.0.0.1:{server.port}", {"Host": val_host(server, "alice-pid")}
    pid = int(httpx.get(url + "/pid", headers=headers, timeout=20).text)

    answer = {}
    visitor = threading.Thread(target=lambda: answer.update(response=httpx.get(url + "/slow", headers=headers, timeout=20)))
    visitor.start()
    time.sleep(0.5)  # the request is in the process when it dies
    os.kill(pid, signal.SIGKILL)
    visitor.join(timeout=20)
    response = answer["response"]
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/plain")
    assert "val.ts" not in response.text  # no stack for the visitor

    again = httpx.get(url + "/pid", headers=headers, timeout=20)
    assert again.status_code == 200 and int(again.text) != pid
    assert [(r.http_status, r.kill_reason) for r in http_records(3)] == [(200, ""), (502, "crashed"), (200, "")]


def test_a_deno_process_killed_mid_run_is_recorded_as_crashed_and_the_next_run_succeeds(server):
    val = make_val(make_user("alice"), name="slow", code=PID_THEN_SLOW_RUN)
    visitor = Visitor()
    visitor.log_in(server, "alice")
    evaluation_id = visitor.press_run(server, val)
    with visitor.log_socket(server, evaluation_id) as socket:
        first = json.loads(socket.recv(timeout=20))
        os.kill(int(first["message"]), signal.SIGKILL)
        _, result = read_log(socket)
    assert result["status"] in ("error", "killed") and result["kill_reason"] == "crashed"
    evaluation = Evaluation.objects.get(pk=evaluation_id)
    assert evaluation.status == result["status"] and evaluation.finished_at is not None

    _, result = visitor.follow(server, visitor.press_run(server, val, "[true]"))
    assert result["status"] == "success" and result["result"]["value"] == "finished"


# --- Web processes -------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["stop", "kill"])
def test_a_web_process_restarted_mid_evaluation_leaves_nothing_running(stop):
    alice = make_user("alice")
    slow = make_val(alice, name="slow", code=PID_THEN_SLOW_RUN)
    make_val(alice, name="hello", type="http", code='export default () => new Response("hello");')
    server = LiveServer(WEB)
    visitor = Visitor()
    try:
        visitor.log_in(server, "alice")
        evaluation_id = visitor.press_run(server, slow)
        wait_until(lambda: Evaluation.objects.get(pk=evaluation_id).logs, timeout=10, message="the run to start")
        # HTTP requests answered just before the stop are recorded, though records are batched.
        for _ in range(5):
            assert httpx.get(server.url, headers={"Host": val_host(server, "alice-hello")}).status_code == 200
        deno = child_pids(server.pid)
        getattr(server, stop)()  # SIGTERM as a deploy does, or SIGKILL as a crash does
        wait_until(lambda: all(gone(pid) for pid in deno), timeout=10, message="its Deno processes to end")
        if stop == "stop":
            # A clean stop records what it was doing on its way out.
            assert Evaluation.objects.get(pk=evaluation_id).status == "interrupted"
            assert Evaluation.objects.filter(trigger="http").count() == 5
        server = LiveServer(WEB, port=server.port)
        evaluation = Evaluation.objects.get(pk=evaluation_id)
        assert evaluation.status == "interrupted" and evaluation.finished_at is not None
        assert not Evaluation.objects.running().exists()

        _, result = visitor.follow(server, visitor.press_run(server, slow, "[true]"))
        assert result["status"] == "success"
    finally:
        server.stop()


# --- Schedulers ----------------------------------------------------------------------

# Slow the first time it runs, quick after.
SLOW_FIRST_CRON = """export default async (interval) => {
  if (interval.lastRunAt === null) await new Promise((resolve) => setTimeout(resolve, 8000));
  return interval;
};
"""


def make_due(val):
    Val.objects.filter(pk=val.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))


def test_a_scheduler_killed_mid_run_leaves_an_interrupted_run_and_the_next_tick_proceeds():
    val = make_val(make_user("alice"), name="tick", type="cron", code=SLOW_FIRST_CRON)
    make_due(val)
    quick = {"SCHEDULER_TICK_SECONDS": "0.1", "SCHEDULER_HOUSEKEEPING_SECONDS": "1"}
    first = SchedulerProcess(quick)
    second = None
    try:
        running = wait_until(lambda: Evaluation.objects.running().filter(trigger="cron").first(), message="the cron run")
        assert running.runner.endswith(f":{first.pid}")
        deno = child_pids(first.pid)
        first.kill()
        wait_until(lambda: all(gone(pid) for pid in deno), timeout=10, message="its Deno processes to end")

        # Another scheduler (a restart, or one that was running all along) carries on.
        make_due(val)
        second = SchedulerProcess(quick)
        wait_until(lambda: Evaluation.objects.filter(trigger="cron").exclude(status="running").count() == 2, message="two finished runs")
        interrupted, next_run = Evaluation.objects.filter(trigger="cron").order_by("id")
        assert interrupted.pk == running.pk and interrupted.status == "interrupted"
        assert next_run.status == "success", second.output()
        assert next_run.result["value"]["lastRunAt"] is not None
    finally:
        first.stop()
        if second is not None:
            second.stop()


# --- Redis ---------------------------------------------------------------------------


class RedisServer:
    """A redis-server of the test's own, so that it can go away without touching the
    machine's shared one."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self._listening, timeout=10, interval=0.05, message="redis-server")

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def kill(self):
        self.process.kill()
        self.process.wait()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_losing_redis_briefly_loses_no_evaluation_and_live_logs_resume():
    alice = make_user("alice")
    ticker = make_val(alice, name="ticker", code=TICKING_VAL)
    make_val(alice, name="hello", type="http", code='export default () => new Response("hello");')
    redis = RedisServer()
    servers = []
    try:
        servers = [LiveServer({**WEB, "REDIS_URL": redis.url}), LiveServer({**WEB, "REDIS_URL": redis.url})]
        watcher, worker = servers
        visitor = Visitor()
        visitor.log_in(worker, "alice")
        expected = [f"line {i}" for i in range(12)]

        def run_on_worker_follow_on_watcher():
            with visitor.log_socket(watcher, visitor.press_run(worker, ticker)) as socket:
                return read_log(socket)

        arrivals, result = run_on_worker_follow_on_watcher()
        assert streamed_live(arrivals, expected, 0.3) and result["status"] == "success"

        redis.kill()
        evaluation_id = visitor.press_run(worker, ticker)
        hello = httpx.get(worker.url, headers={"Host": val_host(worker, "alice-hello")}, timeout=20)
        assert hello.status_code == 200 and hello.text == "hello"
        evaluation = wait_until(lambda: Evaluation.objects.filter(pk=evaluation_id).exclude(status="running").first(), message="the run without Redis")
        assert evaluation.status == "success" and [line["message"] for line in evaluation.logs] == expected
        wait_until(lambda: Evaluation.objects.filter(trigger="http").count() == 1, timeout=10, message="the HTTP record")

        redis = RedisServer(port=redis.port)
        arrivals, result = run_on_worker_follow_on_watcher()
        assert streamed_live(arrivals, expected, 0.3) and result["status"] == "success"
    finally:
        for server in servers:
            server.stop()
        redis.kill()


# --- A full disk under std/blob ------------------------------------------------------

FILLS_THE_DISK = """\
import { blob } from "/std/blob.ts";

export default async () => {
  const attempt = async (f) => { try { await f(); return "ok"; } catch (error) { return error.message; } };
  const value = "x".repeat(150_000);
  const writes = [];
  for (let i = 0; i < 5; i++) writes.push(await attempt(() => blob.set(`part${i}`, value)));
  const kept = (await blob.list()).map((b) => b.key);
  await blob.delete("part0");
  const afterDelete = await attempt(() => blob.set("again", value));
  return { writes, kept, afterDelete, read: (await blob.get("part1"))?.length };
};
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare, for a small disk of the server's own")
def test_a_full_disk_under_std_blob_is_a_clear_error_and_writes_succeed_once_there_is_room(tmp_path):
    val = make_val(make_user("alice"), name="filler", code=FILLS_THE_DISK)
    root = tmp_path / "blobs"
    root.mkdir()
    # The server sees a 512 KiB disk at BLOB_ROOT, mounted in a mount namespace of its own;
    # the quota per user (50 MB) is far away.
    small_disk = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=512k tmpfs "{root}" && exec "$@"', "sh"]
    server = LiveServer({**WEB, "BLOB_ROOT": str(root)}, command_prefix=small_disk)
    try:
        visitor = Visitor()
        visitor.log_in(server, "alice")
        _, result = visitor.follow(server, visitor.press_run(server, val))
        assert result["status"] == "success", result
        full = "blob storage is unavailable or full; nothing was written, try again later"
        value = result["result"]["value"]
        assert value["writes"] == ["ok", "ok", "ok", full, full]
        assert value["kept"] == ["part0", "part1", "part2"]
        assert value["afterDelete"] == "ok" and value["read"] == 150_000
        # Nothing half-written is left on the disk: one file per value stored.
        disk = Path(f"/proc/{server.pid}/root{root}")
        assert len([path for path in disk.rglob("*") if path.is_file()]) == Blob.objects.count() == 3
    finally:
        server.stop()
