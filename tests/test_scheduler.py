import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from tests.factory import make_val
from tests.live import ROOT, LiveServer, database_url_for_tests
from vals.evaluations.models import Evaluation
from vals.scheduler import Scheduler

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(EVALUATION_KEEP_DAYS=1)
async def test_housekeeping_prunes_evaluations_and_then_rests(alice):
    from asgiref.sync import sync_to_async

    val = await sync_to_async(make_val)(alice, name="foo")
    old = await Evaluation.objects.acreate(val=val, val_version=0, principal=alice, status="success", started_at=timezone.now() - timedelta(days=2))
    scheduler = Scheduler()
    assert await scheduler.housekeeping() is True
    assert not await Evaluation.objects.filter(pk=old.pk).aexists()
    assert await scheduler.housekeeping() is False


def test_runscheduler_stops_cleanly_on_sigterm():
    env = {**os.environ, "DATABASE_URL": database_url_for_tests()}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runscheduler"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "Scheduler running." in output and "Scheduler stopped." in output


def test_the_dev_server_runs_the_scheduler_inside_it(alice):
    val = make_val(alice, name="foo")
    old = Evaluation.objects.create(val=val, val_version=0, principal=alice, status="success", started_at=timezone.now() - timedelta(days=400))
    server = LiveServer({"EVALUATION_KEEP_DAYS": "30", "EMBEDDED_SCHEDULER": "true"})
    try:
        deadline = time.monotonic() + 15
        while Evaluation.objects.filter(pk=old.pk).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Evaluation.objects.filter(pk=old.pk).exists(), server.output()
    finally:
        server.stop()
