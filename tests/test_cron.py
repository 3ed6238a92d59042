"""Cron vals: schedules, claiming each run exactly once, missed runs, pausing."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from tests.factory import make_val
from tests.live import ROOT, database_url_for_tests
from vals.evaluations import runner
from vals.evaluations.models import Evaluation
from vals.models import Val
from vals.scheduler import Scheduler
from vals.schedules import parse_schedule

CRON_CODE = 'export default (interval) => { console.log("tick", interval.scheduledAt); return interval; };'


@pytest.mark.parametrize("text", ["*/5 * * * *", "0 9 * * 1", "every 15 minutes", "every 2 hours", "every 1 day"])
def test_schedules_are_cron_expressions_or_intervals(text):
    assert parse_schedule(text).text == text


@pytest.mark.parametrize("text", ["", "* * * * * *", "61 * * * *", "every day", "sometimes", "every 0 minutes"])
def test_bad_schedules_get_a_clear_error(text):
    with pytest.raises(ValidationError):
        parse_schedule(text)


@override_settings(CRON_MIN_INTERVAL_SECONDS=3600)
def test_schedules_run_at_most_once_per_minimum_interval():
    with pytest.raises(ValidationError, match="at most once every 3600 seconds"):
        parse_schedule("every 30 minutes")


def test_a_cron_expression_is_read_in_utc():
    moment = datetime(2026, 1, 5, 8, 59, tzinfo=UTC)
    assert parse_schedule("0 9 * * *").next_after(moment) == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_a_new_cron_val_is_scheduled(alice):
    val = make_val(alice, name="tick", type="cron")
    assert val.schedule == "every 1 hour"
    assert timedelta(minutes=59) < val.next_run_at - timezone.now() <= timedelta(hours=1)


def test_changing_the_type_to_cron_schedules_it_and_back_unschedules_it(alice_client, alice):
    val = make_val(alice, name="tick")
    data = {"name": "tick", "type": "cron", "privacy": "public", "readme": "", "code": val.code}
    alice_client.post(reverse("val_save", args=[val.pk]), data)
    val.refresh_from_db()
    assert val.next_run_at is not None
    alice_client.post(reverse("val_save", args=[val.pk]), {**data, "type": "script"})
    val.refresh_from_db()
    assert val.next_run_at is None


def test_the_owner_sets_and_pauses_the_schedule_from_the_page(alice_client, alice):
    val = make_val(alice, name="tick", type="cron")
    response = alice_client.post(reverse("val_schedule", args=[val.pk]), {"schedule": "*/10 * * * *"}, HTTP_HX_REQUEST="true")
    assert b"Next run:" in response.content
    val.refresh_from_db()
    assert val.schedule == "*/10 * * * *" and val.next_run_at.minute % 10 == 0
    response = alice_client.post(reverse("val_schedule", args=[val.pk]), {"schedule": "*/10 * * * *", "paused": "on"}, HTTP_HX_REQUEST="true")
    val.refresh_from_db()
    assert val.schedule_paused and val.next_run_at is None
    assert b"Paused" in response.content


def test_a_bad_schedule_is_an_inline_error(alice_client, alice):
    val = make_val(alice, name="tick", type="cron")
    response = alice_client.post(reverse("val_schedule", args=[val.pk]), {"schedule": "whenever"}, HTTP_HX_REQUEST="true")
    assert "is not a schedule" in response.content.decode()
    val.refresh_from_db()
    assert val.schedule == "every 1 hour"


def test_only_the_owner_changes_the_schedule(bob_client, alice):
    val = make_val(alice, name="tick", type="cron")
    assert bob_client.post(reverse("val_schedule", args=[val.pk]), {"schedule": "* * * * *"}).status_code == 403


def test_the_page_shows_the_next_run_time(anonymous_client, alice):
    make_val(alice, name="tick", type="cron")
    content = anonymous_client.get("/v/alice/tick").content.decode()
    assert "Next run:" in content and "every 1 hour" in content


@pytest.mark.django_db(transaction=True)
async def test_a_due_cron_runs_once_as_its_owner_with_its_interval(alice):
    val = await sync_to_async(make_val)(alice, name="tick", type="cron", code=CRON_CODE)
    past = timezone.now() - timedelta(minutes=1)
    await Val.objects.filter(pk=val.pk).aupdate(next_run_at=past)
    assert await Scheduler().run_due_crons() is True
    assert await Scheduler().run_due_crons() is False
    await runner.wait_for_all()
    evaluation = await Evaluation.objects.select_related("principal").aget()
    assert evaluation.trigger == "cron" and evaluation.principal == alice and evaluation.status == "success"
    assert evaluation.result["value"]["scheduledAt"] == past.isoformat()
    assert evaluation.result["value"]["lastRunAt"] is None


@pytest.mark.django_db(transaction=True)
async def test_a_schedule_missed_during_downtime_runs_once_not_in_a_burst(alice):
    val = await sync_to_async(make_val)(alice, name="tick", type="cron", code=CRON_CODE)
    await sync_to_async(val.set_schedule)("every 1 minute")
    await Val.objects.filter(pk=val.pk).aupdate(next_run_at=timezone.now() - timedelta(days=3))
    for _ in range(3):
        await Scheduler().run_due_crons()
    await runner.wait_for_all()
    assert await Evaluation.objects.acount() == 1
    await val.arefresh_from_db()
    assert val.next_run_at > timezone.now()


@pytest.mark.django_db(transaction=True)
async def test_a_paused_cron_does_not_run(alice):
    val = await sync_to_async(make_val)(alice, name="tick", type="cron", code=CRON_CODE)
    await Val.objects.filter(pk=val.pk).aupdate(next_run_at=timezone.now() - timedelta(minutes=1), schedule_paused=True)
    assert await Scheduler().run_due_crons() is False


@pytest.mark.django_db(transaction=True)
def test_two_scheduler_processes_never_run_the_same_cron_twice(alice):
    vals = [make_val(alice, name=f"tick{n}", type="cron", code="export default () => 1;") for n in range(12)]
    Val.objects.filter(pk__in=[v.pk for v in vals]).update(next_run_at=timezone.now() - timedelta(seconds=5))
    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "SCHEDULER_TICK_SECONDS": "0.05", "SCHEDULER_BATCH": "3"}
    schedulers = [
        subprocess.Popen([sys.executable, "manage.py", "runscheduler"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Evaluation.objects.filter(trigger="cron").exclude(status="running").count() >= len(vals):
                break
            time.sleep(0.2)
        time.sleep(1)  # room for a double run to show up, if there were one
    finally:
        for process in schedulers:
            process.terminate()
        outputs = [process.communicate(timeout=30)[0] for process in schedulers]
    runs_per_val = {v.pk: Evaluation.objects.filter(val=v, trigger="cron").count() for v in vals}
    assert runs_per_val == {v.pk: 1 for v in vals}, outputs
    assert Evaluation.objects.filter(status="success").count() == len(vals), outputs
