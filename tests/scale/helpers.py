"""A visitor's view of a running platform: logging in, pressing Run, following the logs."""

import json
import re
import time

import httpx
from django.conf import settings
from websockets.sync.client import connect

SESSION = settings.SESSION_COOKIE_NAME
CSRF = settings.CSRF_COOKIE_NAME


class Visitor:
    """One browser. It may talk to any web process, as through a load balancer: its
    cookies go with it."""

    def __init__(self, cookies=None):
        self.cookies = dict(cookies or {})
        self.http = httpx.Client(timeout=30, follow_redirects=False)

    def close(self):
        self.http.close()

    def _remember(self, response):
        for name in (SESSION, CSRF):
            if name in response.cookies:
                self.cookies[name] = response.cookies[name]

    def request(self, server, method, path, **kwargs):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **kwargs.pop("headers", {})}
        response = self.http.request(method, server.url + path, headers=headers, **kwargs)
        self._remember(response)
        return response

    def get(self, server, path, **kwargs):
        return self.request(server, "GET", path, **kwargs)

    def log_in(self, server, username, password="correct horse 1"):
        page = self.get(server, "/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = self.request(
            server, "POST", "/accounts/login/", data={"csrfmiddlewaretoken": token, "login": username, "password": password}
        )
        assert response.status_code == 302 and SESSION in self.cookies, response.text[:500]

    def press_run(self, server, val, args=""):
        """Press Run on the val's page. Returns the new evaluation's id."""
        if CSRF not in self.cookies:
            self.get(server, f"/v/{val.owner.username}/{val.name}")
        response = self.request(
            server,
            "POST",
            f"/vals/{val.pk}/run",
            data={"args": args},
            headers={"X-CSRFToken": self.cookies[CSRF], "HX-Request": "true"},
        )
        assert response.status_code == 200, response.text[:500]
        found = re.search(r"/ws/evaluations/(\d+)", response.text)
        assert found, response.text[:500]
        return int(found.group(1))

    def log_socket(self, server, evaluation_id):
        """The websocket the val's page opens for an evaluation's live log (JSON messages)."""
        url = server.url.replace("http://", "ws://") + f"/ws/evaluations/{evaluation_id}?format=json"
        headers = {"Cookie": f"{SESSION}={self.cookies[SESSION]}", "Origin": server.url}
        return connect(url, additional_headers=headers, open_timeout=10)

    def follow(self, server, evaluation_id, timeout=30):
        """The evaluation's live log as the page reads it: [(arrival time, message)], then
        the result message."""
        with self.log_socket(server, evaluation_id) as socket:
            return read_log(socket, timeout)


def read_log(socket, timeout=30):
    arrivals = []
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["type"] == "result":
            return arrivals, message
        arrivals.append((time.monotonic(), message["message"]))


def val_host(server, label):
    """The Host header of an HTTP val's own origin on this server."""
    return f"{label}.web.localhost:{server.port}"


def wait_until(predicate, timeout=30, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


def streamed_live(arrivals, expected_lines, spread_seconds):
    """The lines are all there, in order, and arrived over time rather than all at the end."""
    assert [text for _, text in arrivals] == expected_lines
    return arrivals[-1][0] - arrivals[0][0] >= spread_seconds
