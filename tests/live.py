"""A real daphne server on the test database, for end-to-end and browser tests."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_tests():
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{settings.get('HOST') or '127.0.0.1'}:{settings.get('PORT') or 5432}/{settings['NAME']}"


class LiveServer:
    def __init__(self, extra_env=None, port=None, command_prefix=(), runserver=False, module_port=None):
        # A given port lets a test restart "the same" server after stopping or killing it.
        # command_prefix wraps the server's command line (it must exec its arguments).
        # runserver: `manage.py runserver` (daphne's, as `make run` serves) instead of
        # `python -m daphne` (as the Procfile does).
        self.port = port or free_port()
        self.module_port = module_port or free_port()
        self.url = f"http://localhost:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "SITE_ROOT": self.url,
            "DEBUG": "true",
            "PYTHONUNBUFFERED": "1",
            "VALTOWN_TESTING": "1",
            # The module origin (valtown/module_origin.py), by the names sandboxes use.
            "RUNTIME_MODULE_HOST": f"127.0.0.1:{self.module_port}",
            "RUNTIME_LIBRARY_HOST": f"localhost:{self.module_port}",
            **(extra_env or {}),
        }
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"valtown-live-{self.port}.log", "w+")
        if runserver:
            server = ["manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]
        else:
            module_origin = f"tcp:port={self.module_port}:interface=127.0.0.1"
            server = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "-e", module_origin, "valtown.asgi:application"]
        self.process = subprocess.Popen(
            [*command_prefix, sys.executable, *server],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_listening()

    def _wait_until_listening(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not listen within {timeout}s:\n{self.output()}")

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def run(self, user, val, args=()):
        """Runs val as user through the API (a read-write token of theirs) and returns the
        evaluation's JSON."""
        import httpx

        from accounts.models import ApiToken

        _, raw = ApiToken.issue(user, "t", "write")
        response = httpx.post(
            f"{self.url}/v1/vals/{val.pk}/run", json={"args": list(args)}, headers={"Authorization": f"Bearer {raw}"}, timeout=60
        )
        assert response.status_code == 200, (response.text, self.output()[-3000:])
        return response.json()

    def value_of(self, user, val, args=()):
        """The value a successful run of val as user returned."""
        body = self.run(user, val, args)
        assert body["status"] == "success", (body, self.output()[-3000:])
        return body["result"]["value"]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    @property
    def pid(self):
        return self.process.pid

    def kill(self):
        """SIGKILL, as a crash or the OOM killer would: no shutdown code runs."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.log.close()


def server_that_mails_to(mail_dir, extra_env=None):
    """A LiveServer whose outgoing mail is written as files into mail_dir (its .mail_dir)."""
    live = LiveServer(
        {
            "TEST_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(mail_dir),
            # No scheduler ticking in the server while the test database is flushed.
            "EMBEDDED_SCHEDULER": "false",
            **(extra_env or {}),
        }
    )
    live.mail_dir = mail_dir
    return live


class SchedulerProcess:
    """`manage.py runscheduler` on the test database, as its own process."""

    def __init__(self, extra_env=None):
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "PYTHONUNBUFFERED": "1",
            "VALTOWN_TESTING": "1",
            **(extra_env or {}),
        }
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"valtown-scheduler-{os.getpid()}-{id(self)}.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.wait_for_output("Scheduler running.")

    @property
    def pid(self):
        return self.process.pid

    def wait_for_output(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the scheduler never said {text!r}:\n{self.output()}")
            time.sleep(0.05)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)


def child_pids(pid):
    """The processes whose parent is pid (a server's or scheduler's Deno processes)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def rss_bytes(pid):
    """A process's resident memory now (VmRSS); 0 once it has exited (a pool retires
    its processes at any moment, so one listed a moment ago may be gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(autouse=True)
def quiet_server_before_flush():
    """For modules that share one live server between transactional tests (import it):
    lets the server finish its last writes (a run's final log flush) before the test
    database is flushed, as on PostgreSQL a write racing the flush's TRUNCATE can deadlock."""
    yield
    from vals.evaluations.models import Evaluation

    deadline = time.monotonic() + 10
    while Evaluation.objects.filter(status="running").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
