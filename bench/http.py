"""Benchmark of HTTP vals served by warm processes, run by `make bench`.

Measures, on this machine, in one run, the same tiny handler
(`(req) => new Response("Hello, world!")`) three ways, each behind a real HTTP server
on loopback:

- val:       daphne serving an ASGI app that serves an HTTP endpoint (the warm,
             sandboxed, jailed process, served on daphne's own event loop), without the
             gateway's database lookup and evaluation record;
- gateway:   the whole platform (valtown.asgi:application under daphne, SQLite) serving
             the handler as a saved HTTP val on its own origin: the gateway finds the val
             and its owner's secrets, serves it with its runtime.http_endpoint() and records the
             evaluation (in batches);
- raw_asgi:  daphne serving a hello-world ASGI app, no val (daphne's own ceiling);
- bare_deno: `deno serve` running the handler directly, no sandbox, no Python.

For each: requests per second with 8 keep-alive connections for a few seconds, and the
p50 latency of one connection doing one request at a time (the gateway: also as a ratio
to raw ASGI, http_gateway_over_raw_asgi). The load generator is wrk
when it is installed (and BENCH_HTTP_LOAD isn't "python"), else a small asyncio client
in a process of its own (its own ceiling is lower; the output says which). Ends with one `BENCH <name> <value>` line per figure, including
http_val_over_raw_asgi and http_val_over_bare_deno (throughput ratios).

    python bench/http.py                       # the benchmark
    python bench/http.py --serve val PORT      # one of its servers, on its own
"""

import sys
from pathlib import Path

# This file is named http.py: the script's own folder must not shadow the standard
# library's http package, so the repository root takes its place on sys.path.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

HANDLER = 'export default (req: Request) => new Response("Hello, world!");\n'
KINDS = ["raw_asgi", "bare_deno", "val", "gateway"]
ROUNDS = 5
ROUND_SECONDS = 2
WARM_UP_SECONDS = 1
THROUGHPUT_CONNECTIONS = 8
LATENCY_SECONDS = 3
HELLO = b"Hello, world!"
GATEWAY_HOST = "bench-hello.web.localhost:8000"  # the val "hello" of the user "bench"


# --- The servers -----------------------------------------------------------------


def val_application():
    import runtime

    endpoint = runtime.http_endpoint(("bench", "hello", 1), code=HANDLER)  # made once, as the gateway does

    async def application(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        outcome = await endpoint.serve(scope, receive, send)
        if outcome.status != "success":
            print("val request failed:", outcome, file=sys.stderr)

    return application


def raw_asgi_application():
    async def application(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        headers = [(b"content-type", b"text/plain;charset=UTF-8"), (b"content-length", str(len(HELLO)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": HELLO})

    return application


def serve_with_daphne(kind, port):
    """Runs daphne in this process until killed (the --serve entry point)."""
    from daphne.server import Server

    application = val_application() if kind == "val" else raw_asgi_application()
    Server(
        application=application,
        endpoints=[f"tcp:port={port}:interface=127.0.0.1"],
        signal_handlers=True,
        verbosity=0,
    ).run()


def gateway_environment(work_dir):
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{work_dir}/gateway.sqlite3",
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-not-secret-" + "x" * 40,
        "EMBEDDED_SCHEDULER": "false",
        "HTTP_VAL_DOMAIN": "web.localhost:8000",
    }


def prepare_gateway(work_dir):
    """A fresh database with the user "bench" and the handler as its HTTP val "hello"."""
    environment = gateway_environment(work_dir)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=environment,
                   check=True, capture_output=True)
    create = (
        "from accounts.models import User; from vals.models import Val; "
        "owner = User.objects.create_user(username='bench', email='bench@example.com', password='a long bench password'); "
        f"Val.create(owner=owner, name='hello', code={HANDLER!r}, type=Val.Type.HTTP)"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", create], cwd=ROOT, env=environment,
                   check=True, capture_output=True)


def start_server(kind, port, work_dir):
    if kind == "gateway":
        prepare_gateway(work_dir)
        command = [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port),
                   "valtown.asgi:application"]
        return subprocess.Popen(command, cwd=ROOT, env=gateway_environment(work_dir), stdout=subprocess.DEVNULL)
    if kind == "bare_deno":
        from runtime.sandbox import find_deno
        from runtime.config import PoolConfig

        Path(work_dir, "val.ts").write_text(HANDLER)
        handler = Path(work_dir, "main.ts")
        handler.write_text('import handler from "./val.ts";\nexport default { fetch: handler };\n')
        environment = {"DENO_DIR": PoolConfig().deno_dir_path, "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1",
                       "PATH": os.environ.get("PATH", "")}
        command = [find_deno(PoolConfig()), "serve", "--quiet", "--no-config", "--allow-net=127.0.0.1",
                   "--host", "127.0.0.1", "--port", str(port), str(handler)]
        return subprocess.Popen(command, cwd=work_dir, env=environment, stdout=subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)], cwd=ROOT)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(server, port, host=None, timeout=60):
    """Until GET / answers 200 (the val's first request also starts its warm process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with code {server.returncode}")
        try:
            status, body = asyncio.run(one_request(port, host))
            if status == 200 and body == HELLO:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server on port {port} did not answer in {timeout} s")


async def one_request(port, host=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(port, host))
        return await read_response(reader)
    finally:
        writer.close()


# --- A small HTTP/1.1 load generator (when wrk isn't installed) --------------------


def request_bytes(port, host=None):
    return f"GET / HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nUser-Agent: bench\r\n\r\n".encode()


async def read_response(reader):
    """(status, body) of one response, with Content-Length or chunked framing."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, body
            body += chunk[:-2]
    return status, body


async def python_load(port, connections, seconds, host=None):
    """(requests per second, latencies in ms, failures) over `seconds`."""
    latencies = []
    failures = 0
    deadline = time.monotonic() + seconds
    request = request_bytes(port, host)

    async def connection():
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                writer.write(request)
                status, _ = await read_response(reader)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    failures += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return len(latencies) / (time.monotonic() - started), latencies, failures


def load_in_a_subprocess(port, connections, seconds, host=None):
    """The Python generator in a process of its own, so it doesn't share a GIL."""
    output = subprocess.run(
        [sys.executable, __file__, "--load", str(port), str(connections), str(seconds), host or ""],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    return json.loads(output)


def wrk_load(port, connections, seconds, host=None):
    headers = ["-H", f"Host: {host}"] if host else []
    output = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", *headers,
         f"http://127.0.0.1:{port}/"],
        check=True, capture_output=True, text=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", output).groups()
    p50_ms = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rate": rate, "p50_ms": p50_ms, "failures": int(errors.group(1)) if errors else 0}


def measure(port, use_wrk, host=None, connections=THROUGHPUT_CONNECTIONS, seconds=ROUND_SECONDS):
    """One load run after a short warm-up (an idle val's process may have been retired
    while the other servers were measured)."""
    load = wrk_load if use_wrk else load_in_a_subprocess
    load(port, connections, WARM_UP_SECONDS, host)
    return load(port, connections, seconds, host)


def start_all(work_dir):
    """Every server, answering and warm: {kind: (process, port, host)}."""
    servers = {}
    for kind in KINDS:
        port = free_port()
        host = GATEWAY_HOST if kind == "gateway" else None
        servers[kind] = (start_server(kind, port, work_dir), port, host)
        wait_until_answering(*servers[kind])
    return servers


def stop_all(servers):
    for server, _, _ in servers.values():
        server.terminate()
    for server, _, _ in servers.values():
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def interleaved_rounds(servers, use_wrk):
    """{kind: [its result in each round]}. Each round measures every server once, in an
    order that rotates from round to round, so that a burst of load from the machine's
    other tenants falls on one round of every server alike, not on one server's figure."""
    results = {kind: [] for kind in KINDS}
    for number in range(ROUNDS):
        shift = number % len(KINDS)
        for kind in KINDS[shift:] + KINDS[:shift]:
            _, port, host = servers[kind]
            results[kind].append(measure(port, use_wrk, host))
    return results


def ratio(results, kind, baseline):
    """The median over rounds of kind's throughput over baseline's in the same round."""
    return statistics.median(mine["rate"] / theirs["rate"] for mine, theirs in zip(results[kind], results[baseline]))


def main():
    use_wrk = shutil.which("wrk") is not None and os.environ.get("BENCH_HTTP_LOAD") != "python"
    work_dir = tempfile.mkdtemp(prefix="bench-http-")
    servers = start_all(work_dir)
    try:
        results = interleaved_rounds(servers, use_wrk)
        # p50 latency: one connection making one request at a time.
        latencies = {kind: measure(port, use_wrk, host, 1, LATENCY_SECONDS) for kind, (_, port, host) in servers.items()}
    finally:
        stop_all(servers)
        shutil.rmtree(work_dir, ignore_errors=True)
    for kind in KINDS:
        failures = sum(result["failures"] for result in results[kind]) + latencies[kind]["failures"]
        if failures:
            raise SystemExit(f"{kind}: {failures} requests failed")

    figures = {}
    for kind in KINDS:
        figures[f"http_{kind}_requests_per_second"] = statistics.median(result["rate"] for result in results[kind])
        figures[f"http_{kind}_p50_ms"] = latencies[kind]["p50_ms"]
        figures[f"http_{kind}_loaded_p50_ms"] = statistics.median(result["p50_ms"] for result in results[kind])
    figures["http_val_over_raw_asgi"] = ratio(results, "val", "raw_asgi")
    figures["http_val_over_bare_deno"] = ratio(results, "val", "bare_deno")
    figures["http_gateway_over_raw_asgi"] = ratio(results, "gateway", "raw_asgi")
    generator = "wrk -t1" if use_wrk else "python asyncio client"
    print(f"machine: {os.cpu_count()} cores, uid={os.geteuid()}, load generator: {generator}, "
          f"{THROUGHPUT_CONNECTIONS} connections for throughput in {ROUNDS} interleaved rounds of "
          f"{ROUND_SECONDS} s, 1 connection for p50")
    for kind in KINDS:
        print(f"rounds {kind}: " + " ".join(f"{result['rate']:.0f}" for result in results[kind]) + " requests/s")
    for name, value in figures.items():
        print(f"BENCH {name} {value:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve_with_daphne(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 6 and sys.argv[1] == "--load":
        rate, latencies, failures = asyncio.run(
            python_load(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] or None)
        )
        print(json.dumps({"rate": rate, "p50_ms": statistics.median(latencies), "failures": failures}))
    else:
        main()
