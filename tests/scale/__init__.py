"""The platform as real processes under scale, load and faults.

- test_scale_out.py (@scale): the Procfile's processes, two web and two schedulers
  started by honcho, on PostgreSQL and Redis. It needs PostgreSQL, so it runs in the
  PostgreSQL pass of the suite (DATABASE_URL=postgres://...) and is skipped on SQLite.
- test_faults.py (@faults): SIGKILLed Deno processes, schedulers and web processes, and a
  Redis that goes away for a while (the test's own redis-server). They run on either
  database.
- test_load.py (@stress): many clients for STRESS_SECONDS (10 in the suite; `make stress`
  runs 60 and writes the figures to bench/README.md).

Each marker runs alone: `pytest -m scale`, `pytest -m faults`, `pytest -m stress`.
Everything listens on loopback only.
"""
