"""HTTP vals' evaluation records, written by a recordevaluations process the server starts."""

import io
import signal

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings
from django.utils import timezone

from tests.factory import make_val
from tests.live import database_url_for_tests
from vals.evaluations import batch
from vals.evaluations.batch import EvaluationWriter, frame, read_batch
from vals.evaluations.management.commands.recordevaluations import Command
from vals.evaluations.models import Evaluation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorder_on_the_test_database(monkeypatch):
    """What a server started by the tests would give its recorder."""
    monkeypatch.setenv("DATABASE_URL", database_url_for_tests())
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "valtown.settings")
    monkeypatch.setenv("DEBUG", "true")
    monkeypatch.setenv("VALTOWN_TESTING", "1")
    with override_settings(EVALUATION_WRITER="process"):
        yield


def records(val, count, path="/"):
    now = timezone.now()
    return [
        {"val_id": val.pk, "principal_id": val.owner_id, "trigger": "http", "status": "success", "started_at": now,
         "finished_at": now, "http_method": "GET", "http_path": f"{path}{number}", "http_status": 200}
        for number in range(count)
    ]


async def written_paths():
    return sorted([path async for path in Evaluation.objects.values_list("http_path", flat=True)])


async def test_records_go_through_the_recorder_process_into_the_database(alice, recorder_on_the_test_database):
    val = await sync_to_async(make_val)(alice, name="web", type="http")
    writer = EvaluationWriter()
    for record in records(val, 250):
        writer.add(record)
    await writer.drain()
    assert await Evaluation.objects.filter(trigger="http", val=val).acount() == 250
    recorder = writer._recorder.process
    await writer.close()
    assert recorder.returncode == 0  # it stopped once its server closed the pipe


async def test_batches_a_dead_recorder_had_not_confirmed_go_to_its_successor(alice, recorder_on_the_test_database):
    val = await sync_to_async(make_val)(alice, name="web", type="http")
    writer = EvaluationWriter()
    for record in records(val, 3, path="/first/"):
        writer.add(record)
    await writer.flush()
    first = writer._recorder.process
    first.send_signal(signal.SIGKILL)  # long before it has loaded Django and written anything
    for record in records(val, 2, path="/second/"):
        writer.add(record)
    await writer.drain()
    assert writer._recorder.process is not first
    assert await written_paths() == ["/first/0", "/first/1", "/first/2", "/second/0", "/second/1"]
    await writer.close()


async def test_a_batch_whose_recorders_keep_dying_is_dropped_not_retried_forever(alice, recorder_on_the_test_database, monkeypatch):
    val = await sync_to_async(make_val)(alice, name="web", type="http")
    real_start = batch.RecorderProcess._start

    async def start_and_die(recorder):
        await real_start(recorder)
        recorder.process.send_signal(signal.SIGKILL)

    monkeypatch.setattr(batch.RecorderProcess, "_start", start_and_die)
    writer = EvaluationWriter()
    writer.add(records(val, 1)[0])
    await writer.drain()  # returns: the batch was sent twice, then given up
    assert not writer._recorder.unconfirmed
    assert await Evaluation.objects.acount() == 0


def test_the_recorder_writes_each_batch_it_reads_and_confirms_it(alice):
    val = make_val(alice, name="web", type="http")
    source = io.BytesIO(frame(records(val, 2, path="/a/")) + frame(records(val, 1, path="/b/")))
    confirmations = io.BytesIO()
    command = Command()
    assert command.record_one_batch(source, confirmations)
    assert command.record_one_batch(source, confirmations)
    assert not command.record_one_batch(source, confirmations)  # the pipe was closed
    assert confirmations.getvalue() == b"+\n+\n"
    assert sorted(Evaluation.objects.values_list("http_path", flat=True)) == ["/a/0", "/a/1", "/b/0"]


def test_a_pipe_closed_in_the_middle_of_a_batch_ends_the_batches():
    whole = frame([{"http_path": "/"}])
    assert read_batch(io.BytesIO(whole)) == [{"http_path": "/"}]
    assert read_batch(io.BytesIO(whole[:-1])) is None
    assert read_batch(io.BytesIO(b"")) is None



def test_a_connection_broken_while_writing_an_earlier_batch_is_replaced(alice):
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("a SQLite connection is a file: it doesn't break (is_usable() is always true)")
    val = make_val(alice, name="web", type="http")
    connection.ensure_connection()
    connection.connection.close()  # as a restarted database server would leave it
    connection.errors_occurred = True
    assert Command().record_one_batch(io.BytesIO(frame(records(val, 1))), io.BytesIO())
    assert Evaluation.objects.filter(val=val).count() == 1
