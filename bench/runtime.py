"""Benchmark of the runtime pool, run by `make bench`.

Measures, on this machine, in one run:
- p50/p95 latency of a trivial val through the warm pool, next to `deno run` of the
  same val as a fresh process, and their ratio (target: under 0.5);
- evaluations per second with 8 concurrent callers, and the pool's refill rate;
- the resident memory of one idle pooled process;
- p50/p95 latency of a val importing an npm package through the warm pool (lodash,
  CommonJS, through Deno's Node compatibility layer; zod, an ES module), the package
  already in the module cache: what a process's start on an import costs.

Ends with one `BENCH <name> <value>` line per figure, for scripts to read.
"""

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime import Limits, Pool, PoolConfig  # noqa: E402
from runtime.process import read_status_bytes  # noqa: E402
from runtime.sandbox import find_deno  # noqa: E402

TRIVIAL_VAL = "export default () => 1 + 1\n"
NPM_VALS = {
    "npm_cjs": "import _ from 'npm:lodash@4.17.21';\nexport default () => _.chunk([1, 2, 3, 4], 2).length;\n",
    "npm_esm": "import { z } from 'npm:zod@3.23.8';\nexport default () => z.number().parse(2);\n",
}
NPM_SAMPLES = 20
LATENCY_SAMPLES = 40
SUSTAINED_SECONDS = 10
CALLERS = 8


def percentile(samples, fraction):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def fresh_deno_run_ms(config, samples):
    """`deno run` of the same val, each a fresh process: what the pool saves."""
    directory = tempfile.mkdtemp()
    Path(directory, "val.ts").write_text(TRIVIAL_VAL)
    Path(directory, "main.ts").write_text("import val from './val.ts';\nconsole.log(val());\n")
    environment = {"DENO_DIR": config.deno_dir_path, "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1"}
    command = [find_deno(config), "run", "--no-prompt", "--no-config", "main.ts"]
    subprocess.run(command, cwd=directory, env=environment, check=True, capture_output=True)  # warm the cache
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        subprocess.run(command, cwd=directory, env=environment, check=True, capture_output=True)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def warm_pool_latency_ms(pool, samples):
    timings = []
    for _ in range(samples):
        await pool.wait_until_ready()  # measure the warm path, not the refill
        started = time.perf_counter()
        result = await pool.evaluate(TRIVIAL_VAL)
        timings.append((time.perf_counter() - started) * 1000)
        assert result.value == 2, result
    return timings


async def npm_import_latency_ms(pool, code, samples):
    """The val's evaluation, each in a fresh warm process, once the package is cached;
    None when the npm registry can't be reached to cache it."""
    first = await pool.evaluate(code, limits=Limits(timeout_seconds=120))  # may download it
    if first.status != "success":
        print(f"npm import skipped: {first.error}")
        return None
    timings = []
    for _ in range(samples):
        await pool.wait_until_ready()
        started = time.perf_counter()
        result = await pool.evaluate(code)
        timings.append((time.perf_counter() - started) * 1000)
        assert result.value == 2, result
    return timings


async def sustained_rate(pool, callers, seconds):
    """Evaluations per second, and processes started per second, under constant load."""
    done = 0
    deadline = time.monotonic() + seconds

    async def caller():
        nonlocal done
        while time.monotonic() < deadline:
            result = await pool.evaluate(TRIVIAL_VAL)
            assert result.value == 2, result
            done += 1

    await pool.wait_until_ready()
    started_before = pool.processes_started
    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.monotonic() - started
    return done / elapsed, (pool.processes_started - started_before) / elapsed


async def idle_rss_mb(pool):
    await pool.wait_until_ready()
    await asyncio.sleep(1)  # let start-up allocations settle
    process = next(process for process in pool._ready._queue if process.alive)
    return read_status_bytes(process.pid, "VmRSS") / 1024 / 1024


async def main():
    config = PoolConfig(wait_timeout_seconds=60)
    figures = {}

    fresh = fresh_deno_run_ms(config, samples=20)
    pool = Pool(config)
    started = time.monotonic()
    await pool.start()
    try:
        await pool.wait_until_ready()
        figures["pool_fill_seconds"] = time.monotonic() - started  # pool_size processes from nothing
        warm = await warm_pool_latency_ms(pool, LATENCY_SAMPLES)
        rate, refill = await sustained_rate(pool, CALLERS, SUSTAINED_SECONDS)
        figures["idle_process_rss_mb"] = await idle_rss_mb(pool)
        npm = {name: await npm_import_latency_ms(pool, code, NPM_SAMPLES) for name, code in NPM_VALS.items()}
    finally:
        await pool.stop()

    figures["pool_p50_ms"] = statistics.median(warm)
    figures["pool_p95_ms"] = percentile(warm, 0.95)
    figures["deno_run_p50_ms"] = statistics.median(fresh)
    figures["deno_run_p95_ms"] = percentile(fresh, 0.95)
    figures["pool_p50_over_deno_run_p50"] = figures["pool_p50_ms"] / figures["deno_run_p50_ms"]
    figures["evaluations_per_second_8_callers"] = rate
    figures["refill_processes_per_second"] = refill
    for name, timings in npm.items():
        if timings:
            figures[f"{name}_import_p50_ms"] = statistics.median(timings)
            figures[f"{name}_import_p95_ms"] = percentile(timings, 0.95)

    print(f"machine: {os.cpu_count()} cores, {sys.platform}, pool_size={config.pool_size}, uid={os.geteuid()}")
    for name, value in figures.items():
        print(f"BENCH {name} {value:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
