"""Writing evaluation records in batches, so that recording HTTP requests never caps throughput.

An HTTP val records every request it serves. The records are collected on the event
loop and written in batches by one of two writers, EVALUATION_WRITER:

- "process" (the default): a `manage.py recordevaluations` process that each server
  process starts for itself, fed through a pipe. Writing a record costs Python tens of
  µs; in a thread of the server that time is taken from the event loop under the GIL,
  and bench/http.py showed it capping the server's throughput.
- "thread": a thread of the server process, as sync_to_async. Tests run in-process use
  it, since a record must land inside the test's own transaction.
"""

import asyncio
import logging
import pickle
import struct
import sys
from collections import deque

from asgiref.sync import sync_to_async
from django.conf import settings

from vals.evaluations.models import Evaluation

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
FLUSH_EVERY_SECONDS = 0.5
# A batch whose writer died twice before confirming it is dropped, not sent a third time.
SENDS_PER_BATCH = 2
STOP_SECONDS = 10
FRAME_HEAD = struct.Struct(">I")


class EvaluationWriter:
    """Collects finished evaluations, as records for Evaluation.objects.insert_records, and
    writes them in batches, from one task."""

    def __init__(self):
        self._pending = []
        self._task = None
        self._wakeup = None
        self._recorder = None

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
        if settings.EVALUATION_WRITER == "process":
            await self._recorder_on_this_loop().send(batch)
        else:
            await sync_to_async(write)(batch)

    def _recorder_on_this_loop(self):
        loop = asyncio.get_running_loop()
        if self._recorder is None or self._recorder.loop is not loop:
            self._recorder = RecorderProcess(loop)
        return self._recorder

    def _recorder_started_on_this_loop(self):
        if self._recorder is not None and self._recorder.loop is asyncio.get_running_loop():
            return self._recorder
        return None

    async def drain(self):
        """Write everything now, and return once it is in the database (tests, shutdown)."""
        await self.flush()
        if recorder := self._recorder_started_on_this_loop():
            await recorder.wait_until_written()

    async def close(self):
        """Drain, then stop the recorder process (the server is stopping)."""
        await self.drain()
        if recorder := self._recorder_started_on_this_loop():
            await recorder.stop()


class RecorderProcess:
    """`manage.py recordevaluations`, started on first use and again whenever it has died.
    Batches go to its stdin as pickles (it trusts its parent, and only its parent can
    write to the pipe); it answers each written batch with a line. Batches it had not
    confirmed when it died go to its successor."""

    def __init__(self, loop):
        self.loop = loop
        self.process = None
        self.unconfirmed = deque()  # [batch, times sent], oldest first
        self._confirmations = None  # the task reading them
        self._all_written = asyncio.Event()
        self._all_written.set()

    @property
    def running(self):
        return self.process is not None and self.process.returncode is None and not self._confirmations.done()

    async def send(self, batch):
        self._all_written.clear()
        self.unconfirmed.append([batch, 0])
        if not self.running:
            await self._start()  # sends every unconfirmed batch, this one too
            return
        self._write(self.unconfirmed[-1])
        await self._drain_pipe()

    async def wait_until_written(self):
        while self.unconfirmed:
            if not self.running:
                await self._start()
                continue
            written = asyncio.ensure_future(self._all_written.wait())
            await asyncio.wait([written, self._confirmations], return_when=asyncio.FIRST_COMPLETED)
            written.cancel()

    async def stop(self):
        if self.process is None or self.process.returncode is not None:
            return
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except asyncio.TimeoutError:
            logger.warning("The evaluation recorder did not stop in %s s; killing it", STOP_SECONDS)
            self.process.kill()
            await self.process.wait()

    async def _start(self):
        if self.process is not None:
            if self.process.returncode is None:
                self.process.kill()
            # Every confirmation it did send is counted first: its batches are sent again below.
            await self._confirmations
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(settings.BASE_DIR / "manage.py"), "recordevaluations",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        self._confirmations = asyncio.ensure_future(self._read_confirmations(self.process))
        for entry in list(self.unconfirmed):
            if entry[1] >= SENDS_PER_BATCH:
                self.unconfirmed.remove(entry)
                logger.error("Dropped %s evaluation records: their recorder died twice while writing them", len(entry[0]))
            else:
                self._write(entry)
        if not self.unconfirmed:
            self._all_written.set()
        await self._drain_pipe()

    def _write(self, entry):
        entry[1] += 1
        self.process.stdin.write(frame(entry[0]))

    async def _drain_pipe(self):
        try:
            await self.process.stdin.drain()
        except ConnectionError:
            pass  # it died: its batches are still unconfirmed, for its successor

    async def _read_confirmations(self, process):
        while await process.stdout.readline():
            if self.unconfirmed:
                self.unconfirmed.popleft()
            if not self.unconfirmed:
                self._all_written.set()
        await process.wait()
        if self.unconfirmed and process is self.process:
            logger.warning("The evaluation recorder exited with %s records unwritten; they go to its successor",
                           sum(len(batch) for batch, _ in self.unconfirmed))


def frame(batch):
    """The batch as a RecorderProcess sends it: its length, then its pickle."""
    data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEAD.pack(len(data)) + data


def read_batch(source):
    """The next batch a RecorderProcess sent to `source`; None at its end."""
    head = source.read(FRAME_HEAD.size)
    if len(head) < FRAME_HEAD.size:
        return None
    (size,) = FRAME_HEAD.unpack(head)
    frame = source.read(size)
    if len(frame) < size:
        return None
    return pickle.loads(frame)


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
