"""Publishing an evaluation's log lines while it runs.

Lines go to the channel layer as they arrive (so a browser connected to any server
process sees them) and to the database in small batches (so a subscriber that joins
late, or a server that dies mid-run, loses nothing).
"""

import asyncio
import logging
import time

from channels.layers import get_channel_layer

from vals.evaluations.storable import RecordedLogs

logger = logging.getLogger(__name__)

FLUSH_EVERY_SECONDS = 0.25


class LiveLog:
    def __init__(self, evaluation, redactor):
        self.evaluation = evaluation
        self.recorded = RecordedLogs(redactor)
        self.layer = get_channel_layer()
        self._queue = asyncio.Queue()
        self._flushed = 0
        self._last_flush = time.monotonic()
        self._sender = asyncio.create_task(self._send_forever())

    @property
    def lines(self):
        return self.recorded.lines

    def add(self, level, message, timestamp_ms):
        """Called for each log line, in the order the val wrote them."""
        line = self.recorded.add(level, message, timestamp_ms)
        if line is not None:
            self._queue.put_nowait(line)

    async def _send_forever(self):
        while True:
            try:
                line = await asyncio.wait_for(self._queue.get(), timeout=FLUSH_EVERY_SECONDS)
            except asyncio.TimeoutError:
                # A quiet spell: store what came before it, for a subscriber who joined
                # after those lines were published.
                await self._flush()
                continue
            if line is None:
                return
            await self.publish({"type": "evaluation.log", "line": line})
            if time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS:
                await self._flush()

    async def _flush(self):
        self._last_flush = time.monotonic()
        if self._flushed == len(self.lines):
            return
        snapshot = list(self.lines)
        await type(self.evaluation).objects.filter(pk=self.evaluation.pk).aupdate(logs=snapshot)
        self._flushed = len(snapshot)
        try:
            # Subscribers read the database when they join: this tells one that joined
            # before this write that there may be lines it had from neither path.
            await self.layer.group_send(self.evaluation.group_name, {"type": "evaluation.stored", "count": len(snapshot)})
        except Exception:
            logger.warning("Could not publish to %s", self.evaluation.group_name, exc_info=True)

    async def publish(self, message):
        try:
            await self.layer.group_send(self.evaluation.group_name, message)
            await self.layer.group_send(
                self.evaluation.val_group_name, {**message, "evaluation_id": self.evaluation.pk, "type": "val." + message["type"].split(".")[1]}
            )
        except Exception:
            # Live logs are a convenience: the evaluation goes on, and its record keeps every line.
            logger.warning("Could not publish to %s", self.evaluation.group_name, exc_info=True)

    async def close(self):
        """Send what is queued; the caller stores the final logs with the result."""
        self._queue.put_nowait(None)
        await self._sender
