"""The evaluation tracing log: pages, filters, privacy, retention, interruption."""

from datetime import timedelta

from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from tests.factory import make_val
from vals.evaluations.models import RUNNER, Evaluation


def make_evaluation(val, principal, **fields):
    fields.setdefault("status", Evaluation.Status.SUCCESS)
    return Evaluation.objects.create(val=val, val_version=val.version, principal=principal, **fields)


def test_the_log_lists_runs_made_as_you_newest_first(alice_client, alice, bob):
    val = make_val(alice, name="foo")
    older = make_evaluation(val, alice, started_at=timezone.now() - timedelta(minutes=5))
    newer = make_evaluation(val, alice, status=Evaluation.Status.ERROR)
    make_evaluation(val, bob)
    page = alice_client.get("/settings/evaluations")
    rows = list(page.context["page"])
    assert rows == [newer, older]
    content = page.content.decode()
    assert "✅" in content and "❌" in content


def test_the_log_filters_by_val_status_and_trigger(alice_client, alice):
    foo, bar = make_val(alice, name="foo"), make_val(alice, name="bar")
    ok = make_evaluation(foo, alice)
    failed = make_evaluation(foo, alice, status=Evaluation.Status.ERROR)
    cron = make_evaluation(bar, alice, trigger=Evaluation.Trigger.CRON)
    assert list(alice_client.get("/settings/evaluations", {"val": foo.pk}).context["page"]) == [failed, ok]
    assert list(alice_client.get("/settings/evaluations", {"status": "error"}).context["page"]) == [failed]
    assert list(alice_client.get("/settings/evaluations", {"trigger": "cron"}).context["page"]) == [cron]
    assert len(alice_client.get("/settings/evaluations", {"status": "bogus"}).context["page"]) == 3


def test_the_log_is_paginated(alice_client, alice):
    val = make_val(alice, name="foo")
    Evaluation.objects.bulk_create([Evaluation(val=val, val_version=0, principal=alice, status="success") for _ in range(55)])
    first = alice_client.get("/settings/evaluations")
    assert len(first.context["page"]) == 50 and first.context["page"].has_next()
    assert len(alice_client.get("/settings/evaluations", {"page": 2}).context["page"]) == 5


def test_an_evaluation_page_shows_logs_result_and_who_it_ran_as(alice_client, alice):
    val = make_val(alice, name="foo")
    evaluation = make_evaluation(
        val,
        alice,
        logs=[{"seq": 0, "level": "info", "message": "hello <b>there</b>", "ts": 1700000000000}],
        result={"type": "json", "value": {"answer": 42}},
        duration_ms=12,
    )
    content = alice_client.get(evaluation.get_absolute_url()).content.decode()
    assert "hello &lt;b&gt;there&lt;/b&gt;" in content
    assert "&quot;answer&quot;: 42" in content
    assert "@alice" in content and "12 ms" in content


def test_nobody_else_sees_your_evaluations(bob_client, alice):
    val = make_val(alice, name="foo")
    evaluation = make_evaluation(val, alice)
    assert bob_client.get(evaluation.get_absolute_url()).status_code == 404
    assert list(bob_client.get("/settings/evaluations").context["page"]) == []


def test_the_val_evaluations_tab_shows_only_your_own_runs(alice_client, alice, bob):
    val = make_val(alice, name="foo")
    mine = make_evaluation(val, alice)
    make_evaluation(val, bob)
    assert list(alice_client.get("/v/alice/foo/evaluations").context["page"]) == [mine]


def test_undefined_and_responses_are_rendered(alice_client, alice):
    val = make_val(alice, name="foo")
    undefined = make_evaluation(val, alice, result={"type": "undefined"})
    response = make_evaluation(
        val, alice, result={"type": "response", "value": {"status": 201, "headers": {"x-a": "b"}, "body": "made"}}
    )
    assert "undefined" in alice_client.get(undefined.get_absolute_url()).content.decode()
    content = alice_client.get(response.get_absolute_url()).content.decode()
    assert "201" in content and "x-a" in content and "made" in content


@override_settings(EVALUATION_KEEP_PER_VAL=3, EVALUATION_KEEP_DAYS=7)
def test_retention_keeps_the_newest_per_val_and_drops_old_ones(alice):
    foo, bar = make_val(alice, name="foo"), make_val(alice, name="bar")
    now = timezone.now()
    foo_runs = [make_evaluation(foo, alice, started_at=now - timedelta(minutes=n)) for n in range(5)]
    ancient = make_evaluation(bar, alice, started_at=now - timedelta(days=8))
    recent = make_evaluation(bar, alice)
    call_command("pruneevaluations")
    assert set(Evaluation.objects.filter(val=foo)) == set(foo_runs[:3])
    assert list(Evaluation.objects.filter(val=bar)) == [recent]
    assert not Evaluation.objects.filter(pk=ancient.pk).exists()


def test_retention_never_drops_a_running_evaluation(alice):
    val = make_val(alice, name="foo")
    with override_settings(EVALUATION_KEEP_PER_VAL=1):
        running = make_evaluation(val, alice, status="running", runner=RUNNER, started_at=timezone.now() - timedelta(minutes=1))
        make_evaluation(val, alice)
        call_command("pruneevaluations")
    assert Evaluation.objects.filter(pk=running.pk).exists()


def test_an_evaluation_left_running_by_a_dead_process_is_marked_interrupted(alice):
    val = make_val(alice, name="foo")
    dead = make_evaluation(val, alice, status="running", runner=RUNNER.rsplit(":", 1)[0] + ":999999999")
    alive = make_evaluation(val, alice, status="running", runner=RUNNER)
    forgotten = make_evaluation(val, alice, status="running", runner="elsewhere:1", started_at=timezone.now() - timedelta(hours=1))
    elsewhere = make_evaluation(val, alice, status="running", runner="elsewhere:1")
    assert Evaluation.objects.interrupt_abandoned() == 2
    statuses = {e.pk: e.status for e in Evaluation.objects.all()}
    assert statuses == {dead.pk: "interrupted", alive.pk: "running", forgotten.pk: "interrupted", elsewhere.pk: "running"}


def test_the_server_marks_abandoned_evaluations_when_it_starts(alice):
    import importlib

    import valtown.asgi

    val = make_val(alice, name="foo")
    dead = make_evaluation(val, alice, status="running", runner=RUNNER.rsplit(":", 1)[0] + ":999999999")
    importlib.reload(valtown.asgi)
    dead.refresh_from_db()
    assert dead.status == "interrupted" and "server stopped" in dead.kill_reason


def test_records_written_in_a_batch_read_back_as_the_evaluations_they_describe(alice):
    val = make_val(alice, name="foo", type="http")
    started = timezone.now() - timedelta(seconds=30)
    records = [
        {
            "val_id": val.pk, "val_version": val.version, "principal_id": alice.pk, "trigger": "http",
            "status": "success", "started_at": started + timedelta(milliseconds=n), "finished_at": started + timedelta(seconds=1),
            "duration_ms": n, "logs": [{"seq": 0, "level": "log", "message": f"request {n} ✓", "ts": 1}], "error": None,
            "http_method": "GET", "http_path": f"/{n}?q=1", "http_status": 200,
        }
        for n in range(130)  # more than one INSERT's worth of rows on SQLite
    ]
    records[7]["error"] = {"name": "Error", "message": "boom", "stack": ""}
    Evaluation.objects.insert_records(records)
    recorded = list(Evaluation.objects.filter(val=val).order_by("duration_ms"))
    assert len(recorded) == 130
    seventh = recorded[7]
    assert seventh.started_at == started + timedelta(milliseconds=7)
    assert seventh.logs[0]["message"] == "request 7 ✓" and seventh.http_path == "/7?q=1"
    assert seventh.error["message"] == "boom" and recorded[8].error is None
    # Fields a record leaves out get their defaults.
    assert seventh.args == [] and seventh.result is None and seventh.kill_reason == ""
    assert Evaluation.objects.filter(val=val, error__isnull=True).count() == 129
