"""Writing evaluation records in batches, so that recording HTTP requests never caps throughput."""

import asyncio
import logging

from asgiref.sync import sync_to_async

from vals.evaluations.models import Evaluation

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
FLUSH_EVERY_SECONDS = 0.5


class EvaluationWriter:
    """Collects finished evaluations, as records for Evaluation.objects.insert_records, and
    writes them in batches, from one task."""

    def __init__(self):
        self._pending = []
        self._task = None
        self._wakeup = None

    def add(self, record):
        self._pending.append(record)
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._write_forever())
        if len(self._pending) >= BATCH_SIZE:
            self._wakeup.set()

    async def _write_forever(self):
        while self._pending:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=FLUSH_EVERY_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wakeup.clear()
            await self.flush()

    async def flush(self):
        batch, self._pending = self._pending, []
        if not batch:
            return
        await sync_to_async(write)(batch)

    async def drain(self):
        """Write everything now (tests, shutdown)."""
        await self.flush()


def write(batch):
    """Inserts the batch; if that fails, each record on its own, so that one bad record
    costs only itself."""
    try:
        Evaluation.objects.insert_records(batch)
        return
    except Exception:
        logger.warning("Could not record a batch of %s evaluations; trying them one by one", len(batch), exc_info=True)
    for record in batch:
        try:
            Evaluation.objects.insert_records([record])
        except Exception:
            logger.exception("Could not record an evaluation of val %s", record.get("val_id"))


writer = EvaluationWriter()
