"""`valtown`: the command-line client for the REST API.

    valtown login                      save a server URL and an API token
    valtown pull alice/foo             write foo.ts with the val's code
    valtown push foo.ts                save foo.ts as a new version of your val "foo"
    valtown run alice/foo 1 '"two"'    run it as you and print its logs and result
    valtown logs alice/foo --follow    stream the logs of your runs of it as they happen
    valtown evals                      list your latest evaluations

VALTOWN_URL and VALTOWN_TOKEN override the saved login. Plain Python: no Django.
"""

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
from pathlib import Path

import httpx


class CliError(Exception):
    """A problem to report in one line, with exit status 1."""


def config_path():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(os.environ.get("VALTOWN_CONFIG") or os.path.join(base, "valtown", "config.json"))


def load_login():
    saved = {}
    path = config_path()
    if path.exists():
        saved = json.loads(path.read_text())
    url = os.environ.get("VALTOWN_URL") or saved.get("url")
    token = os.environ.get("VALTOWN_TOKEN") or saved.get("token")
    if not url or not token:
        raise CliError("Not logged in: run `valtown login` (or set VALTOWN_URL and VALTOWN_TOKEN).")
    return url.rstrip("/"), token


class Api:
    def __init__(self, url, token):
        self.url = url
        self.token = token
        self.http = httpx.Client(base_url=url + "/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def call(self, method, path, **kwargs):
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise CliError(f"Could not reach {self.url}: {error}") from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise CliError(f"{response.status_code}: {message}")
        return response.json() if response.content else None

    def val(self, ref):
        username, _, name = ref.partition("/")
        if not username or not name:
            raise CliError(f"Name a val as user/val, not “{ref}”.")
        return self.call("GET", f"/alias/{username}/{name}")


def login(args):
    url = (args.url or input("Server URL [http://localhost:8000]: ").strip() or "http://localhost:8000").rstrip("/")
    token = args.token or getpass.getpass("API token (from /settings/tokens): ").strip()
    me = Api(url, token).call("GET", "/me")
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "token": token}))
    path.chmod(0o600)
    print(f"Logged in to {url} as @{me['username']}.")


def pull(args):
    api = Api(*load_login())
    val = api.val(args.val)
    target = Path(args.output or f"{val['name']}.ts")
    target.write_text(val["code"])
    print(f"Wrote @{val['owner']}/{val['name']} v{val['version']} to {target}.")


def push(args):
    api = Api(*load_login())
    source = Path(args.file)
    if not source.exists():
        raise CliError(f"No such file: {source}")
    code = source.read_text()
    me = api.call("GET", "/me")
    name = args.name or source.stem
    try:
        val = api.val(f"{me['username']}/{name}")
    except CliError as error:
        if not str(error).startswith("404"):
            raise
        val = api.call("POST", "/vals", json={"name": name, "code": code, "type": args.type})
        print(f"Created @{val['owner']}/{val['name']} v{val['version']}.")
        return
    saved = api.call("POST", f"/vals/{val['id']}/versions", json={"code": code})
    if saved["created"]:
        print(f"Saved @{val['owner']}/{val['name']} v{saved['number']}.")
    else:
        print(f"@{val['owner']}/{val['name']} v{saved['number']} already has this code.")


def parse_argument(text):
    """An argument is JSON when it parses as JSON, and a plain string otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# Control characters but newline and tab: a val's output (another user's library's, or
# mail's an email val logs) must not reach the terminal as escape sequences, which can
# rewrite what was printed before or set the clipboard.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text):
    """text with its control characters shown as escapes (\x1b), not obeyed."""
    return CONTROL_CHARACTERS.sub(lambda match: match.group().encode("unicode_escape").decode(), str(text))


def print_line(line, prefix=""):
    stream = sys.stderr if line["level"] in ("error", "warn", "stderr") else sys.stdout
    print(printable(f"{prefix}{line['level']:>5} {line['message']}"), file=stream)


def print_outcome(evaluation):
    if evaluation["status"] == "success":
        result = evaluation.get("result") or {}
        if result.get("type") == "undefined":
            print("undefined")
        else:
            print(printable(json.dumps(result.get("value"), indent=2, ensure_ascii=False)))
        return 0
    error = evaluation.get("error") or {}
    print(printable(f"{evaluation['status']}: {error.get('name', '')} {error.get('message', '')}".rstrip()), file=sys.stderr)
    if error.get("stack"):
        print(printable(error["stack"]), file=sys.stderr)
    if evaluation.get("kill_reason"):
        print(printable(f"stopped: {evaluation['kill_reason']}"), file=sys.stderr)
    return 1


def run(args):
    api = Api(*load_login())
    val = api.val(args.val)
    evaluation = api.call("POST", f"/vals/{val['id']}/run", json={"args": [parse_argument(a) for a in args.args]})
    for line in evaluation["logs"]:
        print_line(line)
    return print_outcome(evaluation)


def logs(args):
    url, token = load_login()
    api = Api(url, token)
    val = api.val(args.val)
    if not args.follow:
        latest = api.call("GET", f"/vals/{val['id']}/evaluations", params={"limit": 1})["items"]
        if not latest:
            print("No runs of this val yet.")
            return 0
        evaluation = api.call("GET", f"/evaluations/{latest[0]['id']}")
        for line in evaluation["logs"]:
            print_line(line)
        return print_outcome(evaluation)
    return asyncio.run(follow(url, token, val, args.count))


async def follow(url, token, val, count=None):
    """Print log lines of every new run of the val made as you, until Ctrl+C (or `count` runs end)."""
    import websockets

    socket_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + f"/ws/vals/{val['id']}/logs"
    finished = 0
    async with websockets.connect(socket_url, additional_headers={"Authorization": f"Bearer {token}"}) as socket:
        print(f"Following @{val['owner']}/{val['name']}. Ctrl+C to stop.", file=sys.stderr, flush=True)
        async for raw in socket:
            message = json.loads(raw)
            if message["type"] == "log":
                print_line(message, prefix=f"#{message['evaluation_id']} ")
            elif message["type"] == "result":
                print(f"#{message['evaluation_id']} {message['status']} in {message.get('duration_ms')} ms")
                finished += 1
                if count is not None and finished >= count:
                    return 0
            sys.stdout.flush()
    return 0


def evals(args):
    api = Api(*load_login())
    params = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    if args.val:
        params["val_id"] = api.val(args.val)["id"]
    for evaluation in api.call("GET", "/evaluations", params=params)["items"]:
        mark = {"success": "ok  ", "running": "... "}.get(evaluation["status"], "FAIL")
        duration = f"{evaluation['duration_ms']} ms" if evaluation["duration_ms"] is not None else ""
        print(f"{mark} #{evaluation['id']:<6} val {evaluation['val_id']} v{evaluation['val_version']}  {evaluation['trigger']:<5} {evaluation['started_at'][:19]}  {duration}")


def parser():
    top = argparse.ArgumentParser(prog="valtown", description="Work with vals from the command line.")
    commands = top.add_subparsers(dest="command", required=True)
    command = commands.add_parser("login", help="save a server URL and an API token")
    command.add_argument("--url")
    command.add_argument("--token")
    command.set_defaults(handler=login)
    command = commands.add_parser("pull", help="write a val's code to <name>.ts")
    command.add_argument("val", help="user/val")
    command.add_argument("-o", "--output")
    command.set_defaults(handler=pull)
    command = commands.add_parser("push", help="save a .ts file as a new version of your val")
    command.add_argument("file")
    command.add_argument("--name", help="the val's name (default: the file's name)")
    command.add_argument("--type", default="script", choices=["script", "http", "cron", "email"], help="when creating it")
    command.set_defaults(handler=push)
    command = commands.add_parser("run", help="run a val as you; arguments are JSON, or plain strings")
    command.add_argument("val", help="user/val")
    command.add_argument("args", nargs="*")
    command.set_defaults(handler=run)
    command = commands.add_parser("logs", help="show the logs of your latest run of a val")
    command.add_argument("val", help="user/val")
    command.add_argument("-f", "--follow", action="store_true", help="stream new runs' logs live")
    command.add_argument("--count", type=int, help=argparse.SUPPRESS)
    command.set_defaults(handler=logs)
    command = commands.add_parser("evals", help="list your latest evaluations")
    command.add_argument("--val", help="user/val")
    command.add_argument("--status")
    command.add_argument("--limit", type=int, default=20)
    command.set_defaults(handler=evals)
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except CliError as error:
        print(f"valtown: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
