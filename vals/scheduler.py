"""The scheduler: cron vals, and housekeeping.

`manage.py runscheduler` runs it as its own process; in the embedded default it also
runs as a task inside the server process. Each step reports whether it did work, and
tests call steps directly.
"""

import asyncio
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from vals.evaluations import runner
from vals.evaluations.models import Evaluation
from vals.models import Val

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(self):
        self.last_housekeeping = None
        self.stopping = asyncio.Event()

    async def tick(self):
        """One pass over every step. Returns whether any of them did work."""
        did_work = False
        for step in (self.run_due_crons, self.housekeeping):
            try:
                did_work |= bool(await step())
            except Exception:
                logger.exception("Scheduler step %s failed", step.__name__)
        return did_work

    async def run_due_crons(self):
        """Start every cron val whose time has come, claiming each run so it happens once.

        A schedule missed during downtime runs once, and its next run is counted from now."""
        now = timezone.now()
        due = await sync_to_async(list)(Val.objects.due_crons(now).select_related("owner")[: settings.SCHEDULER_BATCH])
        started = 0
        for val in due:
            scheduled_at, last_run_at = val.next_run_at, val.last_run_at
            if not await sync_to_async(val.claim_due_run)(now):
                continue  # another scheduler won this run
            interval = {"scheduledAt": scheduled_at.isoformat(), "lastRunAt": last_run_at.isoformat() if last_run_at else None}
            await runner.start(val.owner, val, [interval], trigger=Evaluation.Trigger.CRON)
            started += 1
        return started > 0

    async def housekeeping(self):
        """Prune old evaluations and mark abandoned ones, every SCHEDULER_HOUSEKEEPING_SECONDS."""
        now = time.monotonic()
        if self.last_housekeeping is not None and now - self.last_housekeeping < settings.SCHEDULER_HOUSEKEEPING_SECONDS:
            return False
        self.last_housekeeping = now
        interrupted = await sync_to_async(Evaluation.objects.interrupt_abandoned)()
        pruned = await sync_to_async(Evaluation.objects.prune)(settings.EVALUATION_KEEP_PER_VAL, settings.EVALUATION_KEEP_DAYS)
        if interrupted or pruned:
            logger.info("Housekeeping: pruned %s evaluations, interrupted %s", pruned, interrupted)
        return True

    async def run_forever(self):
        while not self.stopping.is_set():
            did_work = await self.tick()
            if not did_work:
                try:
                    await asyncio.wait_for(self.stopping.wait(), timeout=settings.SCHEDULER_TICK_SECONDS)
                except asyncio.TimeoutError:
                    pass

    def stop(self):
        self.stopping.set()
