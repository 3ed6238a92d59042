"""Scaled out as the Procfile says: honcho starts two web processes and two schedulers on
PostgreSQL and Redis, and traffic goes to both web processes, as a load balancer would
send it. No cron runs twice, no evaluation is lost, and logs stream across processes.

It needs PostgreSQL, so it runs in the suite's PostgreSQL pass and is skipped on SQLite:
`DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres pytest -m scale`. Redis is the
machine's (SCALE_REDIS_URL, default redis://127.0.0.1:6379 with a database number of its
own, so that concurrent runs rarely share one).
"""

import os
import re
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from tests.factory import make_user, make_val, ticking_val
from tests.live import ROOT, database_url_for_tests, free_port
from tests.scale.helpers import Visitor, streamed_live, val_host, wait_until
from vals.evaluations.models import Evaluation
from vals.models import Val

POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
REDIS_URL = os.environ.get("SCALE_REDIS_URL", f"redis://127.0.0.1:6379/{8 + os.getpid() % 8}")


def redis_is_up():
    host, port = re.match(r"redis://([^:/]+):(\d+)", REDIS_URL).groups()
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.scale,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not POSTGRES, reason="scale-out runs on PostgreSQL: the suite's PostgreSQL pass runs it"),
    pytest.mark.skipif(not redis_is_up(), reason=f"no Redis at {REDIS_URL}"),
]

# A line every 100 ms for a second: a follower whose websocket connects a few hundred ms
# after Run (four runs at once, on two busy cores) still sees the rest arrive live.
TICKING_LINES = 10
TICKING_VAL = ticking_val(TICKING_LINES)


class Web:
    """One of the Procfile's web processes, as a visitor reaches it."""

    def __init__(self, port):
        self.port = port
        self.url = f"http://localhost:{port}"


def two_free_ports():
    """A port free with the next one, and their module origins' (the Procfile's PORT + 1000)."""
    while True:
        base = free_port()
        try:
            for port in (base + 1, base + 1000, base + 1001):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


class Platform:
    """`honcho start -c web=2,scheduler=2 web scheduler`, from the repository's Procfile."""

    def __init__(self):
        base = two_free_ports()
        self.web = [Web(base), Web(base + 1)]
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DATABASE_URL": database_url_for_tests(),
            "REDIS_URL": REDIS_URL,
            "SITE_ROOT": self.web[0].url,  # the address the load balancer would have
            "MODULE_HOST": f"127.0.0.1:{base + 1000}",  # web.1's module origin
            "PYTHONUNBUFFERED": "1",
            "VALTOWN_TESTING": "1",
            "SCHEDULER_TICK_SECONDS": "0.1",
            "SCHEDULER_BATCH": "2",
        }
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"valtown-honcho-{base}.log", "w+")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "honcho"), "start", "--no-colour", "-f", "Procfile", "-p", str(base),
             "-c", "web=2,scheduler=2", "web", "scheduler"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            for web in self.web:
                wait_until(lambda: self._listening(web.port), timeout=60, message=f"web on {web.port}:\n{self.output()}")
            wait_until(lambda: self.output().count("Scheduler running.") == 2, timeout=60, message=f"schedulers:\n{self.output()}")
        except Exception:
            self.stop()
            raise

    def _listening(self, port):
        if self.process.poll() is not None:
            raise RuntimeError(f"honcho exited:\n{self.output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def pid(self, name):
        """The pid honcho reports for one of its processes, e.g. "scheduler.2"."""
        return int(re.search(rf"{re.escape(name)} started \(pid=(\d+)\)", self.output()).group(1))

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # honcho passes it to every process
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def platform(django_db_setup, django_db_blocker):
    running = Platform()
    yield running
    running.stop()


def test_two_web_processes_and_two_schedulers_share_the_work_and_lose_nothing(platform):
    web1, web2 = platform.web
    alice = make_user("alice")
    ticker = make_val(alice, name="ticker", code=TICKING_VAL)
    make_val(alice, name="hello", type="http", code='export default (req) => new Response("hello from " + new URL(req.url).host);')
    crons = [make_val(alice, name=f"tick{n}", type="cron", code="export default (interval) => interval.scheduledAt;") for n in range(6)]

    def make_crons_due():
        Val.objects.filter(pk__in=[val.pk for val in crons]).update(next_run_at=timezone.now() - timedelta(seconds=1))

    def finished_cron_runs():
        return Evaluation.objects.filter(trigger="cron").exclude(status="running").count()

    make_crons_due()  # the schedulers race for these while the visitors come

    # Alice signs in on one process; her session works on the other.
    visitor = Visitor()
    visitor.log_in(web1, "alice")
    assert visitor.get(web2, "/settings/evaluations").status_code == 200

    # Runs pressed on each process are followed live from the other one.
    def run_here_follow_there(here, there):
        return Visitor(visitor.cookies).follow(there, Visitor(visitor.cookies).press_run(here, ticker))

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(run_here_follow_there, [web1, web2, web1, web2], [web2, web1, web2, web1]))
        hellos = list(pool.map(lambda n: httpx.get(platform.web[n % 2].url, headers={"Host": val_host(platform.web[n % 2], "alice-hello")}, timeout=30), range(40)))
    for arrivals, result in runs:
        assert result["status"] == "success"
        assert streamed_live(arrivals, [f"line {i}" for i in range(TICKING_LINES)], 0.2), "the lines came all at once"
    assert [response.status_code for response in hellos] == [200] * 40
    assert {response.text for response in hellos} == {f"hello from alice-hello.web.localhost:{web.port}" for web in platform.web}

    # A second round of cron runs once the first is done.
    wait_until(lambda: finished_cron_runs() == len(crons), timeout=30, message="the first round of cron runs")
    make_crons_due()
    wait_until(lambda: finished_cron_runs() == 2 * len(crons), timeout=30, message="the second round of cron runs")

    # No cron ran twice: each val ran once per round, for two different scheduled times.
    for val in crons:
        runs_of_val = list(Evaluation.objects.filter(val=val, trigger="cron"))
        assert len(runs_of_val) == 2 and all(run.status == "success" for run in runs_of_val)
        assert len({run.result["value"] for run in runs_of_val}) == 2
    # No evaluation was lost or left running: every Run and every HTTP request is recorded.
    assert Evaluation.objects.filter(trigger="run", status="success").count() == 4
    wait_until(lambda: Evaluation.objects.filter(trigger="http").count() == 40, timeout=10, message="40 HTTP records")
    assert Evaluation.objects.filter(trigger="http", http_status=200).count() == 40
    assert not Evaluation.objects.running().exists()
    # Both web processes ran evaluations, and both schedulers started cron runs.
    runners = set(Evaluation.objects.filter(trigger__in=["run", "http"]).values_list("runner", flat=True))
    assert {runner.rsplit(":", 1)[1] for runner in runners} == {str(platform.pid("web.1")), str(platform.pid("web.2"))}


def test_the_schedulers_ran_the_cron_runs_not_the_web_processes(platform):
    val = make_val(make_user("alice"), name="tick", type="cron", code="export default () => 1;")
    Val.objects.filter(pk=val.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))
    run = wait_until(lambda: Evaluation.objects.filter(val=val).exclude(status="running").first(), message="the cron run")
    assert run.status == "success"
    assert run.runner.rsplit(":", 1)[1] in {str(platform.pid("scheduler.1")), str(platform.pid("scheduler.2"))}


def test_a_cron_val_run_by_a_scheduler_imports_its_owners_private_val(platform):
    alice = make_user("alice")
    make_val(alice, name="secretSauce", privacy="private", code='export const sauce = "tomato";')
    val = make_val(alice, name="tick", type="cron", code='import { sauce } from "/v/alice/secretSauce.ts";\nexport default () => sauce;')
    Val.objects.filter(pk=val.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))
    run = wait_until(lambda: Evaluation.objects.filter(val=val).exclude(status="running").first(), message="the cron run")
    assert run.status == "success", run.error
    assert run.result["value"] == "tomato"
